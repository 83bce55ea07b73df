"""Submitting samples (cells, or fields whose cells are detected) and reading them back with their images."""

from __future__ import annotations

import functools
import json
from datetime import date, datetime, timezone
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from PIL import Image
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from lablens.explain.gradcam import GradCam, overlay
from lablens.infer.bag_call import METHOD as BAG_METHOD
from lablens.infer.bag_call import call_bags
from lablens.infer.bundle import Bundle
from lablens.infer.predictor import CLASSIFIED, NOT_EVALUABLE
from lablens.service import audit
from lablens.service.auth import Principal
from lablens.service.documents import cell_doc, sample_doc
from lablens.service.flags import quality_flags
from lablens.service.models import Cell, Sample
from lablens.service.registry import ModelEntry, RegistryError
from lablens.service.state import Id, ReadSession, ServiceState, State, Technician, get_or_404, service
from lablens.service.storage import image_path, png_bytes, store_png
from lablens.service.submission import Submission, read_submission

router = APIRouter(prefix="/api", tags=["samples"])

SUBMISSION_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["name", "files"],
                    "properties": {
                        "name": {"type": "string", "maxLength": 200},
                        "kind": {"type": "string", "enum": ["cells", "fields"], "default": "cells"},
                        "task": {"type": "string", "default": "blood"},
                        "um_per_px": {"type": "number", "minimum": 0.01, "maximum": 10},
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    },
                }
            }
        },
    }
}


@router.post("/samples", status_code=201, openapi_extra=SUBMISSION_BODY)
async def submit(request: Request, user: Technician) -> dict[str, Any]:
    """A new sample: form fields ``name``, ``kind`` (cells | fields), ``task``, ``um_per_px``, then ``files``."""
    state = service(request)
    sub = await read_submission(request, state.settings, functools.partial(_model_for, state))
    name = sub.fields.get("name", "").strip()
    if not name or len(name) > 200:
        raise HTTPException(422, "name: give the sample a name of 1 to 200 characters")
    if sub.n_files == 0:
        raise HTTPException(422, "files: the submission holds no file")
    if sub.kept_files == 0:
        detail = "; ".join(f"{s['name']}: {s['reason']}" for s in sub.skipped)
        raise HTTPException(415, f"no readable image in the submission ({detail})")
    if not sub.crops:
        raise HTTPException(422, "no cells were found on the submitted fields")
    return await run_in_threadpool(_store, state, user, name, sub)


def _model_for(state: ServiceState, task: str) -> ModelEntry:
    """The task's active model (422 naming the tasks served when there is none)."""
    with state.make_read_session() as session:
        try:
            return state.registry.for_task(session, task.strip())
        except RegistryError as exc:
            raise HTTPException(422, str(exc)) from None


def _classify(model: ModelEntry, sub: Submission) -> tuple[Any, ...]:
    """Per cell: probabilities, gate status, quality and OOD scores, attention; and the sample's call and the
    OOD guard's verdict. A cell of a field judged not evaluable is not evaluable whatever its own score."""
    bundle, n = model.bundle, len(sub.crops)
    crops = np.stack(sub.crops)
    if bundle.inputs == "bags":  # the sample is called from all its cells at once; each cell also alone
        bag = call_bags(bundle, [crops], device=model.predictor.device)[0]
        top = int(bag.sample.argmax())
        call = {
            "method": BAG_METHOD,
            "predicted": bundle.classes[top],
            "probabilities": {c: round(float(v), 6) for c, v in zip(bundle.classes, bag.sample, strict=True)},
        }
        none = [None] * n
        return bag.cells, [CLASSIFIED] * n, none, none, [float(a) for a in bag.attention], call, None
    gate_crops = model.gate.resize(sub.crops) if model.gate is not None else None
    scores = model.predictor.gated_scores(crops, gate_crops)
    status = scores.status.copy()
    for i, src in enumerate(sub.sources):
        if src and src.get("field_evaluable") is False:
            status[i] = NOT_EVALUABLE
    scores.status = status
    verdict = model.predictor.check(scores)
    quality = [None] * n if scores.quality is None else [float(v) for v in scores.quality]
    ood = [None] * n if scores.ood is None else [float(v) for v in scores.ood]
    return scores.proba, list(status), quality, ood, [None] * n, None, verdict


def _store(state: ServiceState, user: Principal, name: str, sub: Submission) -> dict[str, Any]:
    """Classify the cells, store their images, and record the sample with its audit event (one transaction)."""
    model = sub.model
    assert model is not None  # chosen when the first file arrived
    bundle = model.bundle
    with state.predict_lock:
        proba, gates, quality, ood, attention, call, verdict = _classify(model, sub)
    flags = quality_flags(sub.crops)
    with state.make_session() as session:
        sample = Sample(
            name=name,
            status="open",
            task=sub.fields.get("task", "blood").strip(),
            bundle_hash=bundle.hash,
            created_by=user.name,
            created_at=datetime.now(timezone.utc),
            call=json.dumps(call) if call else None,
            ood=json.dumps(verdict.as_dict()) if verdict is not None else None,
        )
        session.add(sample)
        session.flush()
        cells = []
        rows = zip(
            sub.names, sub.crops, proba, flags, sub.sources, attention, gates, quality, ood, strict=True
        )
        for fname, img, p, fl, src, att, gate, q, o in rows:
            k = int(p.argmax())
            cell = Cell(
                sample_id=sample.id,
                original_name=fname,
                image_sha256=store_png(state.storage, img),
                predicted=bundle.classes[k],
                confidence=float(p[k]),
                probabilities=json.dumps(
                    {c: round(float(v), 6) for c, v in zip(bundle.classes, p, strict=True)}
                ),
                status="pending",
                flags=json.dumps(fl),
                source=json.dumps(src) if src else None,
                attention=att,
                bundle_hash=bundle.hash,
                gate=gate,
                quality_score=q,
                ood_score=o,
            )
            session.add(cell)
            cells.append(cell)
        session.flush()
        after = {
            "name": name,
            "kind": sub.fields.get("kind", "cells"),
            "task": sample.task,
            "model": {"id": model.id, "task": model.task, "version": model.version},
            "files": sub.kept_files,
            "skipped": sub.skipped,
            "bundle_hash": bundle.hash,
            "call": call,
            "ood": verdict.as_dict() if verdict is not None else None,
            "cells": [
                {
                    "id": c.id,
                    "image_sha256": c.image_sha256,
                    "predicted": c.predicted,
                    "confidence": c.confidence,
                    "attention": c.attention,
                    "gate": c.gate,
                }
                for c in cells
            ],
        }
        audit.append(session, state.audit_key, user.name, "submit_sample", "sample", sample.id, None, after)
        session.commit()
        session.refresh(sample)
        return {**sample_doc(sample, state.settings.min_confidence), "skipped": sub.skipped}


@router.get("/samples")
def list_samples(
    _user: Technician,
    state: State,
    session: ReadSession,
    task: str | None = None,
    status: str | None = Query(None, pattern="^(open|signed)$"),
    since: date | None = None,
) -> list[dict[str, Any]]:
    """The worklist, newest first; ``task``, ``status`` (open | signed) and ``since`` (a date) filter it."""
    q = select(Sample).order_by(Sample.id.desc())
    if task:
        q = q.where(Sample.task == task)
    if status:
        q = q.where(Sample.status == status)
    if since:
        q = q.where(Sample.created_at >= datetime.combine(since, datetime.min.time(), tzinfo=timezone.utc))
    rows = session.execute(q).scalars()
    return [sample_doc(s, state.settings.min_confidence, with_cells=False) for s in rows]


@router.get("/queue")
def held_back(
    _user: Technician,
    state: State,
    session: ReadSession,
    kind: str = Query("not_evaluable", pattern="^(not_evaluable|out_of_distribution|unidentified)$"),
) -> list[dict[str, Any]]:
    """Cells of open samples waiting in one queue: not evaluable (quality gate), out of distribution (OOD
    guard) or unidentified (below the confidence threshold), oldest sample first."""
    q = select(Cell, Sample).join(Sample).where(Sample.status == "open").order_by(Sample.id, Cell.id)
    out = []
    for cell, sample in session.execute(q).all():
        doc = cell_doc(cell, state.settings.min_confidence)
        if doc["queue"] == kind:
            out.append({**doc, "sample_id": sample.id, "sample": sample.name, "task": sample.task})
    return out


def _field_images(s: Sample) -> dict[str, str]:
    """Field name → stored image sha256, in the order the sample's cells came from them."""
    out: dict[str, str] = {}
    for c in s.cells:
        src = json.loads(c.source) if c.source else None
        if src and "field_sha256" in src:
            out.setdefault(src["field"], src["field_sha256"])
    return out


@router.get("/samples/{sample_id}/fields")
def sample_fields(
    sample_id: Id, _user: Technician, state: State, session: ReadSession
) -> list[dict[str, Any]]:
    """The fields of a field submission with the box, queue and call of every cell found on them."""
    s = get_or_404(session, Sample, sample_id, "sample")
    fields: dict[str, dict[str, Any]] = {}
    for c in s.cells:
        src = json.loads(c.source) if c.source else None
        if not src or "field_sha256" not in src:
            continue
        f = fields.setdefault(
            src["field"],
            {
                "field": src["field"],
                "image": f"/api/samples/{s.id}/fields/{len(fields)}/image",
                "evaluable": src.get("field_evaluable"),
                "quality_score": src.get("field_quality"),
                "cells": [],
            },
        )
        doc = cell_doc(c, state.settings.min_confidence)
        f["cells"].append(
            {k: doc[k] for k in ("id", "queue", "final", "predicted", "confidence")} | {"box": src["box"]}
        )
    return list(fields.values())


@router.get("/samples/{sample_id}/fields/{index}/image")
def field_image(
    sample_id: Id,
    index: Annotated[int, PathParam(ge=0, le=100_000)],
    _user: Technician,
    state: State,
    session: ReadSession,
) -> Response:
    s = get_or_404(session, Sample, sample_id, "sample")
    shas = list(_field_images(s).values())
    if index >= len(shas):
        raise HTTPException(404, f"sample {sample_id} has no field {index}")
    return Response(image_path(state.storage, shas[index]).read_bytes(), media_type="image/png")


@router.get("/samples/{sample_id}")
def get_sample(sample_id: Id, _user: Technician, state: State, session: ReadSession) -> dict[str, Any]:
    return sample_doc(get_or_404(session, Sample, sample_id, "sample"), state.settings.min_confidence)


@router.get("/cells/{cell_id}/image")
def cell_image(cell_id: Id, _user: Technician, state: State, session: ReadSession) -> Response:
    c = get_or_404(session, Cell, cell_id, "cell")
    return Response(image_path(state.storage, c.image_sha256).read_bytes(), media_type="image/png")


_CAMS: dict[str, GradCam | str] = {}  # by bundle hash (called under the predict lock)


def _gradcam(bundle: Bundle) -> GradCam | str:
    """The bundle's Grad-CAM, built on first use; the reason as a string when the bundle has none."""
    if bundle.hash not in _CAMS:
        try:
            _CAMS[bundle.hash] = GradCam.for_bundle(bundle)
        except ValueError as exc:
            _CAMS[bundle.hash] = str(exc)
    return _CAMS[bundle.hash]


@router.get("/cells/{cell_id}/gradcam")
def cell_gradcam(cell_id: Id, _user: Technician, state: State, session: ReadSession) -> Response:
    c = get_or_404(session, Cell, cell_id, "cell")
    try:
        bundle = state.registry.for_hash(session, c.bundle_hash or c.sample.bundle_hash).bundle
    except RegistryError as exc:
        raise HTTPException(404, str(exc)) from None
    with state.predict_lock:
        cam = _gradcam(bundle)
        if isinstance(cam, str):
            raise HTTPException(404, f"no Grad-CAM for this bundle: {cam}")
        img = np.asarray(Image.open(image_path(state.storage, c.image_sha256)).convert("RGB"))
        heat = cam(img[None], np.array([bundle.classes.index(c.label or c.predicted)])).heatmaps[0]
    return Response(png_bytes(overlay(img, heat)), media_type="image/png")
