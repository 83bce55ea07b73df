"""Replay the audit events and compare what they say with the samples, cells and users in the database.

A keyed chain proves that the events were not rewritten; this proves that the records were not changed behind
the events' back (a signed cell's label edited in the ``cells`` table, a role raised in ``users``, a row
removed). Every difference is named: the record, the field, the value found and the value the events give.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lablens.service.models import AuditEvent, Cell, Model, Sample, User

MODEL_ACTIONS = ("activate_model", "promote_model", "rollback_model")
USER_ACTIONS = ("create_user", "rotate_token", "revoke_token", "deactivate_user", "activate_user", "set_role")


@dataclass
class _Expected:
    """What the events say a record should be (``fields``), and the event that said it last."""

    fields: dict[str, Any] = field(default_factory=dict)
    event: int = 0


def _expected_state(session: Session) -> tuple[dict[str, dict[int, _Expected]], set[int]]:
    """Records by entity kind and id as the events leave them, and the samples whose cells were all listed."""
    state: dict[str, dict[int, _Expected]] = {"user": {}, "sample": {}, "cell": {}, "model": {}}
    listed: set[int] = set()
    for ev in session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars():
        after = json.loads(ev.after) or {}
        if ev.entity == "user" and ev.action in USER_ACTIONS:
            rec = state["user"].setdefault(ev.entity_id, _Expected())
            rec.fields.update(
                {k: v for k, v in after.items() if k in ("name", "role", "active", "token_sha256")}
            )
            if ev.action == "create_user":
                rec.fields.setdefault("active", True)
            rec.event = ev.id
        elif ev.entity == "sample" and ev.action == "submit_sample":
            state["sample"][ev.entity_id] = _Expected(
                {"name": after.get("name"), "status": "open", "signed_by": None, "created_by": ev.actor},
                ev.id,
            )
            if "cells" in after:  # events written before cells were listed cannot vouch for them
                listed.add(ev.entity_id)
                for c in after["cells"]:
                    state["cell"][c["id"]] = _Expected(
                        {
                            "sample_id": ev.entity_id,
                            "image_sha256": c["image_sha256"],
                            "predicted": c["predicted"],
                            "label": None,
                            "status": "pending",
                        },
                        ev.id,
                    )
        elif ev.entity == "model" and ev.action == "register_model":
            state["model"][ev.entity_id] = _Expected(
                {k: after.get(k) for k in ("task", "version", "bundle_hash")} | {"active": False}, ev.id
            )
        elif ev.entity == "model" and ev.action in MODEL_ACTIONS:
            before = json.loads(ev.before) or {}
            previous = before.get("active_model")
            if previous in state["model"]:
                state["model"][previous].fields["active"] = False
                state["model"][previous].event = ev.id
            rec = state["model"].setdefault(ev.entity_id, _Expected())
            rec.fields["active"] = True
            rec.event = ev.id
        elif ev.entity == "sample" and ev.action == "sign":
            rec = state["sample"].setdefault(ev.entity_id, _Expected())
            rec.fields.update({"status": "signed", "signed_by": ev.actor})
            rec.event = ev.id
        elif ev.entity == "cell" and ev.action in ("confirm", "reclassify"):
            rec = state["cell"].setdefault(ev.entity_id, _Expected())
            rec.fields.update({"label": after.get("label"), "status": after.get("status")})
            rec.event = ev.id
    return state, listed


def _compare(kind: str, rid: int, found: dict[str, Any], expected: _Expected | None) -> list[dict[str, Any]]:
    if expected is None:
        return [{"kind": "record", "entity": kind, "id": rid, "reason": f"{kind} {rid} has no audit event"}]
    out = []
    for name, value in expected.fields.items():
        if name in found and found[name] != value:
            out.append(
                {
                    "kind": "record",
                    "entity": kind,
                    "id": rid,
                    "reason": f"{kind} {rid}: {name} is {found[name]!r} but the audit (event {expected.event}) "
                    f"says {value!r}",
                }
            )
    return out


def replay(session: Session) -> list[dict[str, Any]]:
    """Every difference between the records and the state the audit events describe."""
    state, listed = _expected_state(session)
    problems: list[dict[str, Any]] = []
    seen: dict[str, set[int]] = {"user": set(), "sample": set(), "cell": set(), "model": set()}
    for m in session.execute(select(Model)).scalars():
        seen["model"].add(m.id)
        found = {"task": m.task, "version": m.version, "bundle_hash": m.bundle_hash, "active": m.active}
        problems += _compare("model", m.id, found, state["model"].get(m.id))
    for u in session.execute(select(User)).scalars():
        seen["user"].add(u.id)
        found = {"name": u.name, "role": u.role, "active": u.active, "token_sha256": u.token_sha256}
        problems += _compare("user", u.id, found, state["user"].get(u.id))
    for s in session.execute(select(Sample)).scalars():
        seen["sample"].add(s.id)
        found = {"name": s.name, "status": s.status, "signed_by": s.signed_by, "created_by": s.created_by}
        problems += _compare("sample", s.id, found, state["sample"].get(s.id))
    for c in session.execute(select(Cell)).scalars():
        seen["cell"].add(c.id)
        expected = state["cell"].get(c.id)
        if expected is None and c.sample_id not in listed:
            expected = _Expected({"label": None, "status": "pending"})  # a legacy sample's unreviewed cell
        found = {
            "sample_id": c.sample_id,
            "image_sha256": c.image_sha256,
            "predicted": c.predicted,
            "label": c.label,
            "status": c.status,
        }
        problems += _compare("cell", c.id, found, expected)
    for kind in ("user", "sample", "model"):
        for rid in sorted(set(state[kind]) - seen[kind]):
            problems.append(
                {
                    "kind": "record",
                    "entity": kind,
                    "id": rid,
                    "reason": f"{kind} {rid} was removed from the database",
                }
            )
    for rid in sorted(set(state["cell"]) - seen["cell"]):
        if "sample_id" in state["cell"][rid].fields:
            problems.append(
                {
                    "kind": "record",
                    "entity": "cell",
                    "id": rid,
                    "reason": f"cell {rid} was removed from the database",
                }
            )
    return problems
