"""Submitting samples (cells, or fields whose cells are detected) and reading them back with their images."""

from __future__ import annotations

import functools
import json
from datetime import datetime, timezone
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from PIL import Image
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from lablens.explain.gradcam import GradCam, overlay
from lablens.infer.bag_call import METHOD as BAG_METHOD
from lablens.infer.bag_call import call_bags
from lablens.service import audit
from lablens.service.auth import Principal
from lablens.service.documents import sample_doc
from lablens.service.flags import quality_flags
from lablens.service.models import Cell, Sample
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
    sub = await read_submission(request, state.settings, state.bundle)
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


def _store(state: ServiceState, user: Principal, name: str, sub: Submission) -> dict[str, Any]:
    """Classify the cells, store their images, and record the sample with its audit event (one transaction)."""
    bundle = state.bundle
    call: dict[str, Any] | None = None
    attention: list[float | None] = [None] * len(sub.crops)
    with state.predict_lock:
        if bundle.inputs == "bags":  # the sample is called from all its cells at once; each cell also alone
            bag = call_bags(bundle, [np.stack(sub.crops)], device=state.predictor.device)[0]
            proba, attention = bag.cells, [float(a) for a in bag.attention]
            top = int(bag.sample.argmax())
            call = {
                "method": BAG_METHOD,
                "predicted": bundle.classes[top],
                "probabilities": {
                    c: round(float(v), 6) for c, v in zip(bundle.classes, bag.sample, strict=True)
                },
            }
        else:
            proba = state.predictor.predict_arrays(np.stack(sub.crops))
    flags = quality_flags(sub.crops)
    with state.make_session() as session:
        sample = Sample(
            name=name,
            status="open",
            bundle_hash=bundle.hash,
            created_by=user.name,
            created_at=datetime.now(timezone.utc),
            call=json.dumps(call) if call else None,
        )
        session.add(sample)
        session.flush()
        cells = []
        rows = zip(sub.names, sub.crops, proba, flags, sub.sources, attention, strict=True)
        for fname, img, p, fl, src, att in rows:
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
            )
            session.add(cell)
            cells.append(cell)
        session.flush()
        after = {
            "name": name,
            "kind": sub.fields.get("kind", "cells"),
            "files": sub.kept_files,
            "skipped": sub.skipped,
            "bundle_hash": bundle.hash,
            "call": call,
            "cells": [
                {
                    "id": c.id,
                    "image_sha256": c.image_sha256,
                    "predicted": c.predicted,
                    "confidence": c.confidence,
                    "attention": c.attention,
                }
                for c in cells
            ],
        }
        audit.append(session, state.audit_key, user.name, "submit_sample", "sample", sample.id, None, after)
        session.commit()
        session.refresh(sample)
        return {**sample_doc(sample, state.settings.min_confidence), "skipped": sub.skipped}


@router.get("/samples")
def list_samples(_user: Technician, state: State, session: ReadSession) -> list[dict[str, Any]]:
    rows = session.execute(select(Sample).order_by(Sample.id.desc())).scalars()
    return [sample_doc(s, state.settings.min_confidence, with_cells=False) for s in rows]


@router.get("/samples/{sample_id}")
def get_sample(sample_id: Id, _user: Technician, state: State, session: ReadSession) -> dict[str, Any]:
    return sample_doc(get_or_404(session, Sample, sample_id, "sample"), state.settings.min_confidence)


@router.get("/cells/{cell_id}/image")
def cell_image(cell_id: Id, _user: Technician, state: State, session: ReadSession) -> Response:
    c = get_or_404(session, Cell, cell_id, "cell")
    return Response(image_path(state.storage, c.image_sha256).read_bytes(), media_type="image/png")


@functools.cache
def _gradcam(state: ServiceState) -> GradCam | str:
    """The bundle's Grad-CAM, built on first use; the reason as a string when the bundle has none."""
    try:
        return GradCam.for_bundle(state.bundle)
    except ValueError as exc:
        return str(exc)


@router.get("/cells/{cell_id}/gradcam")
def cell_gradcam(cell_id: Id, _user: Technician, state: State, session: ReadSession) -> Response:
    c = get_or_404(session, Cell, cell_id, "cell")
    with state.predict_lock:
        cam = _gradcam(state)
        if isinstance(cam, str):
            raise HTTPException(404, f"no Grad-CAM for this bundle: {cam}")
        img = np.asarray(Image.open(image_path(state.storage, c.image_sha256)).convert("RGB"))
        heat = cam(img[None], np.array([state.bundle.classes.index(c.label or c.predicted)])).heatmaps[0]
    return Response(png_bytes(overlay(img, heat)), media_type="image/png")
