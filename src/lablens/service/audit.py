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

A key is replaced by :func:`rotate` (``lablens audit rotate-key``, with the service stopped): the chain is verified
with the old key, then a ``key_rotated`` event keyed with the new one records the SHA-256 digest of every row
before it. From then on those rows are checked through that digest (their links and their content, to the byte),
the rotation event and every later row with the new key: the old key is no longer needed, and knowing it (a
leaked or published key) no longer lets anyone rewrite what came before the rotation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from lablens.errors import SettingError
from lablens.service.models import AuditEvent

GENESIS = "0" * 64
ROTATED = "key_rotated"
AUDIT_LOCK_KEY = 0x1AB1E45  # PostgreSQL advisory lock guarding the chain's head
KEYED, UNKEYED = "hmac-sha256", "sha256"


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


def signed_by(ev: AuditEvent, key: bytes) -> bool:
    """Whether the keyed row ``ev`` was written with ``key`` (and not changed since)."""
    expected = event_hash(
        key, ev.prev_hash, ev.at, ev.actor, ev.action, ev.entity, ev.entity_id, ev.before, ev.after
    )
    return ev.scheme == KEYED and hmac.compare_digest(ev.hash, expected)


def key_id(key: bytes) -> str:
    """A short public name of a key (a keyed hash of a constant: it reveals nothing of the key)."""
    return hmac.new(key, b"lablens audit key id", hashlib.sha256).hexdigest()[:16]


def newest_keyed(session: Session) -> AuditEvent | None:
    q = select(AuditEvent).where(AuditEvent.scheme == KEYED).order_by(AuditEvent.id.desc()).limit(1)
    return session.execute(q).scalar_one_or_none()


def _rotation_digest(ev: AuditEvent) -> str | None:
    """The digest of the earlier rows that a key rotation's record holds (None if it holds none)."""
    try:
        after = json.loads(ev.after or "null")
    except ValueError:
        return None
    return after.get("digest") if isinstance(after, dict) else None


def _record(ev: AuditEvent) -> bytes:
    """Everything stored of a row, canonically: what a rotation's digest covers."""
    fields = [ev.id, ev.at, ev.actor, ev.action, ev.entity, ev.entity_id, ev.before, ev.after]
    return _canonical([*fields, ev.prev_hash, ev.hash, ev.scheme]).encode()


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

    The rows must read: unkeyed legacy rows (maybe none), the keyed seal when there were any, keyed rows. Rows
    before the newest key rotation are checked through its digest, the rest with ``key``.
    """
    events = list(session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars())
    # rows before the newest rotation that ``key`` signed are vouched for by its digest; a rotation row written
    # without the key pins nothing (it is reported below as changed)
    rotations = [i for i, ev in enumerate(events) if ev.action == ROTATED and signed_by(ev, key)]
    pinned_until = rotations[-1] if rotations else 0
    prev, legacy, keyed = GENESIS, 0, False
    digest = hashlib.sha256()
    problems: list[dict[str, Any]] = []
    hashes: dict[int, str] = {}
    for i, ev in enumerate(events):
        hashes[ev.id] = ev.hash
        reason = None
        if ev.prev_hash != prev:
            reason = "link to the previous event broken: an event before it was removed, inserted or changed"
        elif i < pinned_until:
            pass  # written under an earlier key: checked through the rotation's digest below
        elif ev.scheme == UNKEYED and keyed:
            reason = "an unkeyed row after the chain was keyed: inserted or rewritten"
        elif ev.scheme == KEYED and legacy and not keyed and ev.action != SEAL:
            reason = "keyed rows follow unkeyed ones without the seal: the chain was rewritten"
        elif ev.scheme == UNKEYED and ev.hash != event_hash(
            None, prev, ev.at, ev.actor, ev.action, ev.entity, ev.entity_id, ev.before, ev.after
        ):
            reason = "content changed after it was written"
        elif ev.scheme == KEYED and not signed_by(ev, key):
            reason = "content changed after it was written (or written without the audit key)"
        elif i == pinned_until and rotations and _rotation_digest(ev) != digest.hexdigest():
            reason = f"events before this key rotation (ids up to {events[i - 1].id}) were changed after it"
        legacy += ev.scheme == UNKEYED
        keyed = keyed or ev.scheme == KEYED
        if reason:
            problems.append({"kind": "chain", "event_id": ev.id, "reason": reason})
        digest.update(_record(ev))
        prev = ev.hash
    if legacy and not keyed:
        problems.append(
            {
                "kind": "chain",
                "reason": f"{legacy} unkeyed events are not sealed by the audit key: rewritten, or written before "
                "lablens keyed its chain (then `lablens audit seal`)",
            }
        )
    return len(events), problems, hashes


def rotate(session: Session, old_key: bytes, new_key: bytes, actor: str = "lablens") -> AuditEvent:
    """Re-seal the chain under ``new_key``: verify it with ``old_key``, then append a ``key_rotated`` event keyed
    with ``new_key`` that holds the digest of every row before it (in the caller's transaction). A chain or
    records that do not verify are refused (a ValueError naming the first problem): they would be sealed as they
    are."""
    if session.get_bind().dialect.name == "postgresql":  # no writer slips in between the check and the seal
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
    result = verify(session, old_key)
    if not result["ok"]:
        first = result["problems"][0]["reason"]
        raise SettingError(
            f"the audit trail does not verify with the current key ({len(result['problems'])} problem(s); first: "
            f"{first}); a rotation would seal it as it is — resolve it first (`lablens audit verify`)"
        )
    events = list(session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars())
    digest = hashlib.sha256()
    for ev in events:
        digest.update(_record(ev))
    last = events[-1] if events else None
    after = {
        "events": len(events),
        "head": last.hash if last is not None else GENESIS,
        "digest": digest.hexdigest(),
        "previous_key_id": key_id(old_key),
        "key_id": key_id(new_key),
    }
    return append(session, new_key, actor, ROTATED, "audit", last.id if last is not None else 0, None, after)


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
