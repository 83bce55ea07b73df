"""The FastAPI application: submit cell images as a sample, classify them, review, sign, audit.

Every state change (sample created, cell confirmed or reclassified, sample signed, user created) is written with
its audit event in one transaction and committed before the response is sent, so an acknowledged action is on
disk even if the server dies the next instant. Roles: technician (submit, review) < reviewer (sign, read the
audit trail) < admin.

Uploads are checked before anything is stored: names that could be paths are refused (400), a file over the size
limit refuses the request (413), and files that are not images are skipped and named with the reason (415 when
no file of the request is an image). Cell images are re-encoded to PNG and stored under their sha256.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at run time, and
# they refer to dependencies defined inside create_app (closures), which string annotations cannot reach.

import functools
import json
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, UploadFile
from fastapi.responses import HTMLResponse, Response
from PIL import Image
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from lablens import __version__
from lablens.data.io import DecodeLimits, ImageError, decode_bytes
from lablens.data.preprocess import to_square
from lablens.explain.gradcam import GradCam, overlay
from lablens.fields.crops import crop_cells
from lablens.fields.detection import create_detector
from lablens.fields.presets import get_preset
from lablens.infer.bundle import load_bundle
from lablens.infer.predictor import Predictor
from lablens.service import audit
from lablens.service.auth import allowed, user_for
from lablens.service.db import make_engine, open_database, sessions
from lablens.service.flags import quality_flags
from lablens.service.models import AuditEvent, Cell, Sample, User
from lablens.service.storage import image_path, png_bytes, store_png

STATIC = Path(__file__).parent / "static"
UNSAFE_NAME = re.compile(r"(^|[\\/])\.\.([\\/]|$)|[\\/\x00]|^\s*$")


@dataclass
class ServiceSettings:
    """What ``lablens serve`` configures.

    Attributes:
        bundle: the single-cell bundle that pre-classifies.
        db_url: SQLAlchemy URL (``sqlite:///lablens.db`` or ``postgresql+psycopg://user@host/db``).
        storage: folder for the cell images (content-addressed PNGs).
        max_upload_bytes: largest accepted file.
        max_files: most files in one submission.
        min_confidence: cells below this top probability go to the "unidentified" queue.
    """

    bundle: str
    db_url: str
    storage: str
    max_upload_bytes: int = 10 * 1024 * 1024
    max_files: int = 1000
    min_confidence: float = 0.5


class Review(BaseModel):
    action: str  # confirm | reclassify
    label: str | None = None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _cell_doc(c: Cell, min_confidence: float) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.original_name,
        "predicted": c.predicted,
        "confidence": round(c.confidence, 4),
        "probabilities": json.loads(c.probabilities),
        "label": c.label,
        "status": c.status,
        "final": c.label or c.predicted,
        "unidentified": c.confidence < min_confidence and c.status == "pending",
        "flags": json.loads(c.flags or "[]"),
        "source": json.loads(c.source) if c.source else None,
        "image": f"/api/cells/{c.id}/image",
    }


def _sample_doc(s: Sample, min_confidence: float, with_cells: bool = True) -> dict[str, Any]:
    cells = [_cell_doc(c, min_confidence) for c in s.cells]
    counts: dict[str, int] = {}
    for c in cells:
        if not c["unidentified"]:
            counts[c["final"]] = counts.get(c["final"], 0) + 1
    n = sum(counts.values())
    doc: dict[str, Any] = {
        "id": s.id,
        "name": s.name,
        "status": s.status,
        "bundle_hash": s.bundle_hash,
        "created_by": s.created_by,
        "created_at": s.created_at.isoformat(),
        "signed_by": s.signed_by,
        "signed_at": s.signed_at.isoformat() if s.signed_at else None,
        "n_cells": len(cells),
        "n_reviewed": sum(c["status"] != "pending" for c in cells),
        "n_unidentified": sum(c["unidentified"] for c in cells),
        "counts": counts,
        "percent": {k: round(100 * v / n, 2) for k, v in sorted(counts.items())} if n else {},
    }
    if with_cells:
        doc["cells"] = cells
    return doc


def _event_doc(e: AuditEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": e.at,
        "actor": e.actor,
        "action": e.action,
        "entity": e.entity,
        "entity_id": e.entity_id,
        "before": json.loads(e.before),
        "after": json.loads(e.after),
        "hash": e.hash,
    }


def create_app(settings: ServiceSettings) -> FastAPI:
    """The app, with the database migrated to the newest schema and the bundle loaded."""
    engine = open_database(settings.db_url)
    make_session = sessions(engine)  # changes (BEGIN IMMEDIATE on SQLite)
    read_engine = make_engine(settings.db_url, writer=False) if engine.dialect.name == "sqlite" else engine
    make_read_session = sessions(read_engine)  # look-ups, which then never queue behind a write
    bundle = load_bundle(settings.bundle)
    predictor = Predictor(bundle, device="cpu")
    predict_lock = threading.Lock()  # one batch at a time through the model; requests still overlap on I/O
    storage = Path(settings.storage)
    storage.mkdir(parents=True, exist_ok=True)
    app = FastAPI(title="lablens review service", version=__version__)
    app.state.settings, app.state.engine, app.state.bundle = settings, engine, bundle

    def db() -> Any:
        with make_read_session() as session:
            yield session

    def db_write() -> Any:
        with make_session() as session:
            yield session

    def current_user(
        session: Annotated[Session, Depends(db)], authorization: Annotated[str | None, Header()] = None
    ) -> User:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise HTTPException(
                401,
                "an API token is needed: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        user = user_for(session, authorization[7:].strip())
        if user is None:
            raise HTTPException(401, "unknown API token", headers={"WWW-Authenticate": "Bearer"})
        return user

    def need(role: str) -> Any:
        def check(user: Annotated[User, Depends(current_user)]) -> User:
            if not allowed(user.role, role):
                raise HTTPException(403, f"this needs the {role} role; {user.name} is a {user.role}")
            return user

        return check

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return (STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/api/whoami")
    def whoami(user: Annotated[User, Depends(current_user)]) -> dict[str, str]:
        return {"name": user.name, "role": user.role}

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "bundle_hash": bundle.hash, "classes": bundle.classes}

    def _cells_of(
        names: list[str], images: list[np.ndarray], kind: str, task: str, um_per_px: float | None
    ) -> tuple[list[str], list[np.ndarray], list[dict | None]]:
        """Cell images at the bundle's size: each image itself, or the cells detected on each field."""
        size, mode = bundle.image_size, bundle.resize_mode
        if kind == "cells":
            return names, [to_square(im, size, mode) for im in images], [None] * len(images)
        try:
            preset = get_preset(task)
        except KeyError as exc:
            raise HTTPException(422, str(exc.args[0])) from None
        if preset.detector is None:
            raise HTTPException(422, f"task {task!r} classifies whole frames; submit them with kind=cells")
        scale = um_per_px or preset.um_per_px
        detector = create_detector(preset.detector, um_per_px=scale, **preset.detector_kwargs)
        out_names, crops, sources = [], [], []
        for fname, img in zip(names, images, strict=True):
            dets = [d for d in detector.detect(img) if d.label in preset.classify]
            if dets:
                crops.extend(crop_cells(img, dets, preset.crop_um / scale, size))
            for i, d in enumerate(dets):
                out_names.append(f"{fname}#{i + 1}")
                sources.append({"field": fname, "box": [int(v) for v in d.box], "detector": preset.detector})
        return out_names, crops, sources

    @app.post("/api/samples", status_code=201)
    def submit(
        user: Annotated[User, Depends(need("technician"))],
        session: Annotated[Session, Depends(db_write)],
        name: Annotated[str, Form(max_length=200)],
        files: Annotated[list[UploadFile], File()],
        kind: Annotated[str, Form()] = "cells",
        task: Annotated[str, Form()] = "blood",
        um_per_px: Annotated[float | None, Form(gt=0)] = None,
    ) -> dict[str, Any]:
        if kind not in ("cells", "fields"):
            raise HTTPException(
                422, "kind must be 'cells' (one cell per image) or 'fields' (cells are detected)"
            )
        if len(files) > settings.max_files:
            raise HTTPException(413, f"{len(files)} files; at most {settings.max_files} per submission")
        pixels, kept, skipped = [], [], []
        for f in files:
            fname = f.filename or ""
            if UNSAFE_NAME.search(fname) or len(fname) > 255:
                raise HTTPException(400, f"file name {fname!r} refused: names may not contain paths")
            data = f.file.read(settings.max_upload_bytes + 1)
            if len(data) > settings.max_upload_bytes:
                raise HTTPException(
                    413, f"{fname}: larger than the {settings.max_upload_bytes // 1024} KiB limit per file"
                )
            try:
                img = decode_bytes(data, DecodeLimits()).pixels
            except ImageError as exc:
                skipped.append({"name": fname, "reason": exc.reason})
                continue
            pixels.append(img)
            kept.append(fname)
        if not kept:
            detail = "; ".join(f"{s['name']}: {s['reason']}" for s in skipped) or "no files"
            raise HTTPException(415, f"no readable image in the submission ({detail})")
        names, crops, sources = _cells_of(kept, pixels, kind, task, um_per_px)
        if not crops:
            raise HTTPException(422, "no cells were found on the submitted fields")
        with predict_lock:
            proba = predictor.predict_arrays(np.stack(crops))
        flags = quality_flags(crops)
        sample = Sample(
            name=name, status="open", bundle_hash=bundle.hash, created_by=user.name, created_at=_now()
        )
        session.add(sample)
        session.flush()
        for fname, img, p, fl, src in zip(names, crops, proba, flags, sources, strict=True):
            digest = store_png(storage, img)
            k = int(p.argmax())
            session.add(
                Cell(
                    sample_id=sample.id,
                    original_name=fname,
                    image_sha256=digest,
                    predicted=bundle.classes[k],
                    confidence=float(p[k]),
                    probabilities=json.dumps(
                        {c: round(float(v), 6) for c, v in zip(bundle.classes, p, strict=True)}
                    ),
                    status="pending",
                    flags=json.dumps(fl),
                    source=json.dumps(src) if src else None,
                )
            )
        session.flush()
        audit.append(
            session,
            user.name,
            "submit_sample",
            "sample",
            sample.id,
            None,
            {
                "name": name,
                "kind": kind,
                "files": len(kept),
                "cells": len(crops),
                "skipped": skipped,
                "bundle_hash": bundle.hash,
            },
        )
        session.commit()
        session.refresh(sample)
        return {**_sample_doc(sample, settings.min_confidence), "skipped": skipped}

    @app.get("/api/samples")
    def list_samples(
        _user: Annotated[User, Depends(need("technician"))], session: Annotated[Session, Depends(db)]
    ) -> list[dict[str, Any]]:
        rows = session.execute(select(Sample).order_by(Sample.id.desc())).scalars()
        return [_sample_doc(s, settings.min_confidence, with_cells=False) for s in rows]

    def _cell(session: Session, cell_id: int) -> Cell:
        c = session.get(Cell, cell_id)
        if c is None:
            raise HTTPException(404, f"no cell {cell_id}")
        return c

    def _sample(session: Session, sample_id: int) -> Sample:
        s = session.get(Sample, sample_id)
        if s is None:
            raise HTTPException(404, f"no sample {sample_id}")
        return s

    @app.get("/api/samples/{sample_id}")
    def get_sample(
        sample_id: int,
        _user: Annotated[User, Depends(need("technician"))],
        session: Annotated[Session, Depends(db)],
    ) -> dict[str, Any]:
        return _sample_doc(_sample(session, sample_id), settings.min_confidence)

    @app.get("/api/cells/{cell_id}/image")
    def cell_image(
        cell_id: int,
        _user: Annotated[User, Depends(need("technician"))],
        session: Annotated[Session, Depends(db)],
    ) -> Response:
        c = _cell(session, cell_id)
        return Response(image_path(storage, c.image_sha256).read_bytes(), media_type="image/png")

    @functools.cache
    def gradcam() -> GradCam | str:
        """The bundle's Grad-CAM, built on first use; the reason as a string when the bundle has none."""
        try:
            return GradCam.for_bundle(bundle)
        except ValueError as exc:
            return str(exc)

    @app.get("/api/cells/{cell_id}/gradcam")
    def cell_gradcam(
        cell_id: int,
        _user: Annotated[User, Depends(need("technician"))],
        session: Annotated[Session, Depends(db)],
    ) -> Response:
        c = _cell(session, cell_id)
        with predict_lock:
            cam = gradcam()
            if isinstance(cam, str):
                raise HTTPException(404, f"no Grad-CAM for this bundle: {cam}")
            img = np.asarray(Image.open(image_path(storage, c.image_sha256)).convert("RGB"))
            heat = cam(img[None], np.array([bundle.classes.index(c.label or c.predicted)])).heatmaps[0]
        return Response(png_bytes(overlay(img, heat)), media_type="image/png")

    @app.post("/api/cells/{cell_id}/review")
    def review(
        cell_id: int,
        body: Review,
        user: Annotated[User, Depends(need("technician"))],
        session: Annotated[Session, Depends(db_write)],
    ) -> dict[str, Any]:
        c = _cell(session, cell_id)
        if c.sample.status != "open":
            raise HTTPException(409, f"sample {c.sample_id} is signed; its cells can no longer change")
        before = {"label": c.label, "status": c.status}
        if body.action == "confirm":
            c.label, c.status = c.predicted, "confirmed"
        elif body.action == "reclassify":
            if body.label not in bundle.classes:
                raise HTTPException(422, f"label {body.label!r} is not one of {', '.join(bundle.classes)}")
            c.label = body.label
            c.status = "confirmed" if body.label == c.predicted else "reclassified"
        else:
            raise HTTPException(422, "action must be 'confirm' or 'reclassify'")
        audit.append(
            session, user.name, body.action, "cell", c.id, before, {"label": c.label, "status": c.status}
        )
        session.commit()
        return _cell_doc(c, settings.min_confidence)

    @app.post("/api/samples/{sample_id}/sign")
    def sign(
        sample_id: int,
        user: Annotated[User, Depends(need("reviewer"))],
        session: Annotated[Session, Depends(db_write)],
    ) -> dict[str, Any]:
        s = _sample(session, sample_id)
        if s.status != "open":
            raise HTTPException(409, f"sample {sample_id} is already signed by {s.signed_by}")
        doc = _sample_doc(s, settings.min_confidence, with_cells=False)
        if doc["n_unidentified"]:
            raise HTTPException(
                409, f"{doc['n_unidentified']} unidentified cells must be classified before sign-off"
            )
        s.status, s.signed_by, s.signed_at = "signed", user.name, _now()
        audit.append(
            session,
            user.name,
            "sign",
            "sample",
            s.id,
            {"status": "open"},
            {"status": "signed", "counts": doc["counts"], "percent": doc["percent"]},
        )
        session.commit()
        return _sample_doc(s, settings.min_confidence)

    @app.get("/api/audit")
    def audit_trail(
        _user: Annotated[User, Depends(need("reviewer"))],
        session: Annotated[Session, Depends(db)],
        entity: str | None = None,
        entity_id: int | None = None,
    ) -> list[dict[str, Any]]:
        q = select(AuditEvent).order_by(AuditEvent.id)
        if entity:
            q = q.where(AuditEvent.entity == entity)
        if entity_id is not None:
            q = q.where(AuditEvent.entity_id == entity_id)
        return [_event_doc(e) for e in session.execute(q).scalars()]

    @app.get("/api/samples/{sample_id}/audit")
    def sample_audit(
        sample_id: int,
        _user: Annotated[User, Depends(need("technician"))],
        session: Annotated[Session, Depends(db)],
    ) -> list[dict[str, Any]]:
        s = _sample(session, sample_id)
        cell_ids = [c.id for c in s.cells]
        q = (
            select(AuditEvent)
            .where(
                ((AuditEvent.entity == "sample") & (AuditEvent.entity_id == sample_id))
                | ((AuditEvent.entity == "cell") & AuditEvent.entity_id.in_(cell_ids))
            )
            .order_by(AuditEvent.id)
        )
        return [_event_doc(e) for e in session.execute(q).scalars()]

    @app.get("/api/audit/verify")
    def audit_verify(
        _user: Annotated[User, Depends(need("reviewer"))], session: Annotated[Session, Depends(db)]
    ) -> dict[str, Any]:
        return audit.verify(session)

    @app.get("/api/agreement")
    def agreement(
        _user: Annotated[User, Depends(need("technician"))], session: Annotated[Session, Depends(db)]
    ) -> dict[str, Any]:
        from sklearn.metrics import cohen_kappa_score

        rows = session.execute(select(Cell.predicted, Cell.label).where(Cell.label.is_not(None))).all()
        if not rows:
            return {"n_reviewed": 0}
        pred, truth = [r[0] for r in rows], [r[1] for r in rows]
        same = sum(p == t for p, t in rows)
        kappa = cohen_kappa_score(truth, pred) if len(set(truth) | set(pred)) > 1 else 1.0
        return {
            "n_reviewed": len(rows),
            "agreement": round(same / len(rows), 4),
            "cohen_kappa": round(float(kappa), 4),
        }

    return app
