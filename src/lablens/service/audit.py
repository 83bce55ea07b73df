"""The audit trail: every action appended as a row whose hash covers its content and the previous row's hash.

Changing, deleting or reordering any row breaks the chain from that row on, and :func:`verify` names the first
row that no longer fits. Appends are serialised so that two concurrent actions never link to the same previous
event: SQLite transactions start with ``BEGIN IMMEDIATE`` (one writer at a time, see ``db.make_engine``), and on
PostgreSQL a transaction-scoped advisory lock is taken before the chain's head is read.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from lablens.service.models import AuditEvent

GENESIS = "0" * 64
AUDIT_LOCK_KEY = 0x1AB1E45  # PostgreSQL advisory lock guarding the chain's head


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_hash(
    prev_hash: str, at: str, actor: str, action: str, entity: str, entity_id: int, before: str, after: str
) -> str:
    content = _canonical([at, actor, action, entity, entity_id, before, after])
    return hashlib.sha256((prev_hash + content).encode()).hexdigest()


def append(
    session: Session, actor: str, action: str, entity: str, entity_id: int, before: Any, after: Any
) -> AuditEvent:
    """Add one event (in the caller's transaction; it is committed with the change it records)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
    last = session.execute(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).scalar_one_or_none()
    prev = last.hash if last is not None else GENESIS
    at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    b, a = _canonical(before), _canonical(after)
    ev = AuditEvent(
        at=at,
        actor=actor,
        action=action,
        entity=entity,
        entity_id=entity_id,
        before=b,
        after=a,
        prev_hash=prev,
        hash=event_hash(prev, at, actor, action, entity, entity_id, b, a),
    )
    session.add(ev)
    return ev


def verify(session: Session) -> dict[str, Any]:
    """Walk the chain; ``{"ok": True, "events": n}`` or the first event id that does not fit and why."""
    prev = GENESIS
    n = 0
    for ev in session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars():
        n += 1
        reason = None
        if ev.prev_hash != prev:
            reason = "link to the previous event broken"
        elif ev.hash != event_hash(
            prev, ev.at, ev.actor, ev.action, ev.entity, ev.entity_id, ev.before, ev.after
        ):
            reason = "content changed after it was written"
        if reason:
            return {"ok": False, "events": n, "first_bad_id": ev.id, "reason": reason}
        prev = ev.hash
    return {"ok": True, "events": n}
