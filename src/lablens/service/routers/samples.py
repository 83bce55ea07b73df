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
from lablens.fields.pipeline import sample_verdict
from lablens.infer.bag_call import METHOD as BAG_METHOD
from lablens.infer.bag_call import call_bags
from lablens.infer.bundle import Bundle
from lablens.service import audit
from lablens.service.auth import Principal
from lablens.service.documents import cell_doc, sample_doc
from lablens.service.models import Cell, Sample
from lablens.service.names import checked_name
from lablens.service.registry import ModelEntry, RegistryError
from lablens.service.state import (
    Id,
    ReadSession,
    ServiceState,
    State,
    Technician,
    get_or_404,
    service,
)
from lablens.service.storage import image_path, png_bytes
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
    sub = await read_submission(
        request, state.settings, functools.partial(_model_for, state), state.predict_lock
    )
    try:
        name = checked_name(sub.fields.get("name", ""), "name", 200)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if sub.n_files == 0:
        raise HTTPException(422, "files: the submission holds no file")
    if sub.kept_files == 0:
        detail = "; ".join(f"{s['name']}: {s['reason']}" for s in sub.skipped)
        raise HTTPException(415, f"no readable image in the submission ({detail})")
    if not sub.cells:
        raise HTTPException(422, "no cells were found on the submitted fields")
    return await run_in_threadpool(_store, state, user, name, sub)


def _model_for(state: ServiceState, task: str) -> ModelEntry:
    """The task's active model (422 naming the tasks served when there is none)."""
    with state.make_read_session() as session:
        try:
            return state.registry.for_task(session, task.strip())
        except RegistryError as exc:
            raise HTTPException(422, str(exc)) from None


def _call_bags(model: ModelEntry, sub: Submission) -> dict[str, Any]:
    """A multiple-instance bundle calls the sample from all its cells at once (and each cell alone)."""
    bundle = model.bundle
    bag = call_bags(bundle, [np.stack(sub.crops)], device=model.predictor.device)[0]
    for cell, p, a in zip(sub.cells, bag.cells, bag.attention, strict=True):
        cell.proba, cell.attention = p, float(a)
    top = int(bag.sample.argmax())
    return {
        "method": BAG_METHOD,
        "predicted": bundle.classes[top],
        "probabilities": {c: round(float(v), 6) for c, v in zip(bundle.classes, bag.sample, strict=True)},
    }


def _store(state: ServiceState, user: Principal, name: str, sub: Submission) -> dict[str, Any]:
    """Record the sample, its classified cells and its audit event (one transaction)."""
    model = sub.model
    assert model is not None  # chosen when the first file arrived
    bundle = model.bundle
    call, verdict = None, None
    if bundle.inputs == "bags":
        with state.predict_lock:
            call = _call_bags(model, sub)
    else:
        verdict = sample_verdict(model.predictor.ood, sub.scores)
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
        for rec in sub.cells:
            k = int(rec.proba.argmax())
            cell = Cell(
                sample_id=sample.id,
                original_name=rec.name,
                image_sha256=rec.image_sha256,
                predicted=bundle.classes[k],
                confidence=float(rec.proba[k]),
                probabilities=json.dumps(
                    {c: round(float(v), 6) for c, v in zip(bundle.classes, rec.proba, strict=True)}
                ),
                status="pending",
                flags=json.dumps(rec.flags),
                source=json.dumps(rec.source) if rec.source else None,
                attention=rec.attention,
                bundle_hash=bundle.hash,
                gate=rec.status,
                quality_score=rec.quality,
                ood_score=rec.ood,
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


@router.get("/review-first")
def review_first(
    _user: Technician,
    state: State,
    session: ReadSession,
    task: str | None = None,
    limit: int = Query(50, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """Open cells still to review, the most informative first (``review_score``: the uncertainty ``lablens
    suggest`` ranks by; oldest sample first among equals), for ``task`` or every task: review these first."""
    q = select(Cell, Sample).join(Sample).where(Sample.status == "open", Cell.status == "pending")
    if task:
        q = q.where(Sample.task == task)
    rows = []
    for cell, sample in session.execute(q.order_by(Sample.id, Cell.id)).all():
        doc = cell_doc(cell, state.settings.min_confidence)
        if doc["review_score"] is not None:
            rows.append({**doc, "sample_id": sample.id, "sample": sample.name, "task": sample.task})
    rows.sort(key=lambda d: -d["review_score"])  # stable: oldest sample, then cell, among equal scores
    return rows[:limit]


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
