"""The audit trail: events by entity, a sample's own trail, the chain's head and its verification."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from lablens.service import audit
from lablens.service.documents import event_doc
from lablens.service.models import AuditEvent, Sample
from lablens.service.settings import MAX_ID
from lablens.service.state import Id, ReadSession, Reviewer, State, Technician, get_or_404

router = APIRouter(prefix="/api", tags=["audit"])
OptionalId = Annotated[int | None, Query(ge=1, le=MAX_ID)]


@router.get("/audit")
def audit_trail(
    _user: Reviewer,
    session: ReadSession,
    entity: Annotated[str | None, Query(max_length=50)] = None,
    entity_id: OptionalId = None,
) -> list[dict[str, Any]]:
    q = select(AuditEvent).order_by(AuditEvent.id)
    if entity:
        q = q.where(AuditEvent.entity == entity)
    if entity_id is not None:
        q = q.where(AuditEvent.entity_id == entity_id)
    return [event_doc(e) for e in session.execute(q).scalars()]


@router.get("/samples/{sample_id}/audit")
def sample_audit(sample_id: Id, _user: Technician, session: ReadSession) -> list[dict[str, Any]]:
    s = get_or_404(session, Sample, sample_id, "sample")
    cell_ids = [c.id for c in s.cells]
    q = (
        select(AuditEvent)
        .where(
            ((AuditEvent.entity == "sample") & (AuditEvent.entity_id == sample_id))
            | ((AuditEvent.entity == "cell") & AuditEvent.entity_id.in_(cell_ids))
        )
        .order_by(AuditEvent.id)
    )
    return [event_doc(e) for e in session.execute(q).scalars()]


@router.get("/audit/head")
def audit_head(_user: Reviewer, session: ReadSession) -> dict[str, Any]:
    """The newest event's id and hash: keep it outside the server, and give it to verify later."""
    return audit.head(session)


@router.get("/audit/verify")
def audit_verify(
    _user: Reviewer,
    state: State,
    session: ReadSession,
    head_id: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    head_hash: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$")] = None,
) -> dict[str, Any]:
    """The chain, the records replayed from it, and (with ``head_id`` and ``head_hash``) an exported head."""
    expected = {"id": head_id, "hash": head_hash} if head_id is not None and head_hash is not None else None
    return audit.verify(session, state.audit_key, expected)
