"""Reviewing cells, signing samples (under the four-eyes rule), and the model-vs-technician agreement."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from lablens.service import audit
from lablens.service.auth import Principal
from lablens.service.documents import cell_doc, sample_doc
from lablens.service.models import AuditEvent, Cell, Sample
from lablens.service.registry import RegistryError
from lablens.service.state import Id, ReadSession, Reviewer, State, Technician, WriteSession, get_or_404

router = APIRouter(prefix="/api", tags=["review"])


class Review(BaseModel):
    action: str  # confirm | reclassify
    label: str | None = None


@router.post("/cells/{cell_id}/review")
def review(
    cell_id: Id, body: Review, user: Technician, state: State, session: WriteSession
) -> dict[str, Any]:
    c = get_or_404(session, Cell, cell_id, "cell")
    if c.sample.status != "open":
        raise HTTPException(409, f"sample {c.sample_id} is signed; its cells can no longer change")
    before = {"label": c.label, "status": c.status}
    if body.action == "confirm":
        c.label, c.status = c.predicted, "confirmed"
    elif body.action == "reclassify":
        try:
            classes = state.registry.for_hash(session, c.bundle_hash or c.sample.bundle_hash).bundle.classes
        except RegistryError as exc:
            raise HTTPException(409, str(exc)) from None
        if body.label not in classes:
            raise HTTPException(422, f"label {body.label!r} is not one of {', '.join(classes)}")
        c.label = body.label
        c.status = "confirmed" if body.label == c.predicted else "reclassified"
    else:
        raise HTTPException(422, "action must be 'confirm' or 'reclassify'")
    after = {"label": c.label, "status": c.status}
    audit.append(session, state.audit_key, user.name, body.action, "cell", c.id, before, after)
    session.commit()
    return cell_doc(c, state.settings.min_confidence)


def four_eyes_refusal(session: Session, sample: Sample, signer: Principal) -> str | None:
    """Why ``signer`` may not sign ``sample`` under the four-eyes rule (None: they may)."""
    if sample.created_by == signer.name:
        return (
            f"{signer.name} submitted sample {sample.id}; under the four-eyes rule another person signs it "
            "(lablens serve --one-person-lab lifts the rule)"
        )
    cell_ids = [c.id for c in sample.cells]
    reviewers = set(
        session.execute(
            select(AuditEvent.actor).where(
                (AuditEvent.entity == "cell")
                & AuditEvent.entity_id.in_(cell_ids)
                & AuditEvent.action.in_(("confirm", "reclassify"))
            )
        ).scalars()
    )
    if reviewers == {signer.name}:
        return (
            f"{signer.name} is the only reviewer of sample {sample.id}; under the four-eyes rule another person "
            "reviews or signs it (lablens serve --one-person-lab lifts the rule)"
        )
    return None


@router.post("/samples/{sample_id}/sign")
def sign(sample_id: Id, user: Reviewer, state: State, session: WriteSession) -> dict[str, Any]:
    s = get_or_404(session, Sample, sample_id, "sample")
    if s.status != "open":
        raise HTTPException(409, f"sample {sample_id} is already signed by {s.signed_by}")
    doc = sample_doc(s, state.settings.min_confidence, with_cells=False)
    if doc["n_unidentified"]:
        raise HTTPException(
            409, f"{doc['n_unidentified']} unidentified cells must be classified before sign-off"
        )
    refusal = four_eyes_refusal(session, s, user) if state.settings.four_eyes else None
    if refusal:  # the attempt itself is on record
        audit.append(
            session, state.audit_key, user.name, "sign_refused", "sample", s.id, None, {"reason": refusal}
        )
        session.commit()
        raise HTTPException(403, refusal)
    s.status, s.signed_by, s.signed_at = "signed", user.name, datetime.now(timezone.utc)
    after = {"status": "signed", "counts": doc["counts"], "percent": doc["percent"]}
    audit.append(session, state.audit_key, user.name, "sign", "sample", s.id, {"status": "open"}, after)
    session.commit()
    return sample_doc(s, state.settings.min_confidence)


@router.get("/agreement")
def agreement(_user: Technician, session: ReadSession) -> dict[str, Any]:
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


@router.get("/monitoring")
def monitoring_rows(
    _user: Technician,
    state: State,
    session: ReadSession,
    task: str | None = None,
    bootstrap: int = Query(500, ge=0, le=5000),
) -> list[dict[str, Any]]:
    """Per task, model version and week: agreement and kappa (95 % CIs over samples), correction rates per
    class, and the shares held back as not evaluable, out of distribution or unidentified."""
    from lablens.service.monitoring import monitoring

    return monitoring(session, state.settings.min_confidence, task=task, n_boot=bootstrap)
