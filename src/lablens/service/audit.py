"""The audit trail: every action appended as a row chained to the one before it with a keyed hash.

``hash = HMAC-SHA256(key, prev_hash + canonical JSON of the row)``, with a key that lives outside the database (a
key file, :func:`load_key`). Someone who can write to the database but does not hold the key cannot recompute the
chain after changing, inserting or removing a row. The database refuses UPDATE and DELETE of audit rows itself
(triggers, migration 0003), :func:`head` exports the newest row's id and hash so that a later
:func:`verify` ``(head=…)`` also notices rows cut from the end, and :func:`verify` replays the events and compares
the result with the current samples, cells and users (:mod:`lablens.service.replay`), naming every mismatch.

Appends are serialised so that two concurrent actions never link to the same previous event: SQLite transactions
start with ``BEGIN IMMEDIATE`` (one writer at a time, see ``db.make_engine``), and on PostgreSQL a
transaction-scoped advisory lock is taken before the chain's head is read.

Rows written before the chain was keyed (``scheme`` ``sha256``) are checked with the plain hash and must be sealed:
the process that migrates such a database with the key appends a keyed ``chain_keyed`` event right after them
(:func:`seal_legacy`, once, at the upgrade; ``lablens audit seal`` by hand otherwise). Unkeyed rows without that
seal, or after it, are signs of tampering (a chain rewritten wholesale as "legacy").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from lablens.service.models import AuditEvent

GENESIS = "0" * 64
AUDIT_LOCK_KEY = 0x1AB1E45  # PostgreSQL advisory lock guarding the chain's head
KEYED, UNKEYED = "hmac-sha256", "sha256"


def load_key(path: str | Path) -> bytes:
    """The audit key in ``path``, created (32 random bytes, hex, readable by its owner only) when missing."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"audit key file {path} is unreadable or not a hex key ({exc})") from None
    if len(key) < 16:
        raise ValueError(f"audit key file {path} holds a key of {len(key)} bytes; at least 16 are needed")
    return key


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_hash(
    key: bytes | None,
    prev_hash: str,
    at: str,
    actor: str,
    action: str,
    entity: str,
    entity_id: int,
    before: str,
    after: str,
) -> str:
    """The row's hash: keyed (HMAC-SHA256) with ``key``, plain SHA-256 for legacy rows (``key`` None)."""
    message = (prev_hash + _canonical([at, actor, action, entity, entity_id, before, after])).encode()
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def append(
    session: Session,
    key: bytes,
    actor: str,
    action: str,
    entity: str,
    entity_id: int,
    before: Any,
    after: Any,
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
        hash=event_hash(key, prev, at, actor, action, entity, entity_id, b, a),
        scheme=KEYED,
    )
    session.add(ev)
    return ev


SEAL = "chain_keyed"


def seal_legacy(session: Session, key: bytes) -> bool:
    """Append the keyed seal after unkeyed rows written before this version; True when one was written."""
    last = session.execute(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).scalar_one_or_none()
    if last is None or last.scheme == KEYED:
        return False
    n = session.execute(select(AuditEvent.id).where(AuditEvent.scheme == UNKEYED)).all()
    append(
        session,
        key,
        "lablens",
        SEAL,
        "audit",
        last.id,
        None,
        {"unkeyed_events": len(n), "unkeyed_head": last.hash},
    )
    return True


def head(session: Session) -> dict[str, Any]:
    """The newest event's id and hash (export it, e.g. daily, and give it to :func:`verify` later)."""
    last = session.execute(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).scalar_one_or_none()
    if last is None:
        return {"id": 0, "hash": GENESIS, "at": None}
    return {"id": last.id, "hash": last.hash, "at": last.at}


def _chain(session: Session, key: bytes) -> tuple[int, list[dict[str, Any]], dict[int, str]]:
    """Walk the chain: (number of events, problems, hash of every event by id).

    The rows must read: unkeyed legacy rows (maybe none), the keyed seal when there were any, keyed rows.
    """
    prev, n, legacy, keyed = GENESIS, 0, 0, False
    problems: list[dict[str, Any]] = []
    hashes: dict[int, str] = {}
    for ev in session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars():
        n += 1
        hashes[ev.id] = ev.hash
        reason = None
        if ev.scheme == UNKEYED and keyed:
            reason = "an unkeyed row after the chain was keyed: inserted or rewritten"
        elif ev.scheme == KEYED and legacy and not keyed and ev.action != SEAL:
            reason = "keyed rows follow unkeyed ones without the seal: the chain was rewritten"
        elif ev.prev_hash != prev:
            reason = "link to the previous event broken: an event before it was removed, inserted or changed"
        else:
            expected = event_hash(
                key if ev.scheme == KEYED else None,
                prev,
                ev.at,
                ev.actor,
                ev.action,
                ev.entity,
                ev.entity_id,
                ev.before,
                ev.after,
            )
            if not hmac.compare_digest(ev.hash, expected):
                reason = "content changed after it was written (or written without the audit key)"
        legacy += ev.scheme == UNKEYED
        keyed = keyed or ev.scheme == KEYED
        if reason:
            problems.append({"kind": "chain", "event_id": ev.id, "reason": reason})
        prev = ev.hash
    if legacy and not keyed:
        problems.append(
            {
                "kind": "chain",
                "reason": f"{legacy} unkeyed events are not sealed by the audit key: rewritten, or written before "
                "lablens keyed its chain (then `lablens audit seal`)",
            }
        )
    return n, problems, hashes


def verify(session: Session, key: bytes, expected_head: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check the chain, an exported head (when given) and the records against the events.

    Returns ``{"ok", "events", "problems": [{"kind", "reason", …}], "first_bad_id", "reason"}``: ``problems``
    names every row that does not fit and every sample, cell or user whose state the events do not explain;
    ``first_bad_id``/``reason`` repeat the first chain problem.
    """
    from lablens.service.replay import replay

    n, problems, hashes = _chain(session, key)
    if expected_head is not None:
        problems.extend(_check_head(expected_head, hashes))
    problems.extend(replay(session))
    doc: dict[str, Any] = {"ok": not problems, "events": n, "problems": problems}
    chain = [p for p in problems if p["kind"] in ("chain", "head")]
    if chain:
        doc["first_bad_id"] = chain[0].get("event_id")
        doc["reason"] = chain[0]["reason"]
    return doc


def _check_head(expected: dict[str, Any], hashes: dict[int, str]) -> list[dict[str, Any]]:
    try:
        event_id, digest = int(expected["id"]), str(expected["hash"])
    except (KeyError, TypeError, ValueError):
        return [{"kind": "head", "reason": "the exported head is not {id, hash}"}]
    if event_id == 0:
        return []
    if event_id not in hashes:
        cut = "the newest events were removed" if event_id > max(hashes, default=0) else "it was removed"
        return [
            {
                "kind": "head",
                "event_id": event_id,
                "reason": f"event {event_id} of the exported head is missing: {cut}",
            }
        ]
    if not hmac.compare_digest(hashes[event_id], digest):
        return [
            {
                "kind": "head",
                "event_id": event_id,
                "reason": f"event {event_id} no longer has the exported hash",
            }
        ]
    return []
