"""The audit trail cannot be quietly rewritten: the database refuses changes, and whoever gets past that (an
attacker with full database access but without the audit key) is named by the verification."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from service_fixtures import drop_append_only_guard, migrate_to, submit
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from lablens.cli import app as cli
from lablens.service import audit
from lablens.service.audit_key import load_key
from lablens.service.models import AuditEvent


def _reviewed_and_signed(svc: dict) -> tuple[dict, list[dict]]:
    """A sample of 3 cells, all reviewed by tina (one reclassified), signed by rita."""
    c, auth = svc["client"], svc["auth"]
    doc = submit(svc, 3)
    classes = c.get("/api/health").json()["classes"]
    other = next(k for k in classes if k != doc["cells"][0]["predicted"])
    c.post(
        f"/api/cells/{doc['cells'][0]['id']}/review",
        json={"action": "reclassify", "label": other},
        headers=auth["technician"],
    )
    for cell in doc["cells"][1:]:
        c.post(f"/api/cells/{cell['id']}/review", json={"action": "confirm"}, headers=auth["technician"])
    assert c.post(f"/api/samples/{doc['id']}/sign", headers=auth["reviewer"]).status_code == 200
    return doc, c.get("/api/audit", headers=auth["reviewer"]).json()


def _verify(svc: dict, head: dict | None = None) -> dict:
    params = {"head_id": head["id"], "head_hash": head["hash"]} if head else {}
    return svc["client"].get("/api/audit/verify", params=params, headers=svc["auth"]["reviewer"]).json()


def _rechain_without_key(engine, start: int = 1, edit: dict | None = None, scheme: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """What an attacker without the key can do: change rows from ``start`` on (``edit``: event id → new
    ``after``) and recompute their hashes with the plain, unkeyed formula (optionally relabelling ``scheme``)."""
    with engine.begin() as conn:
        rows = conn.execute(select(AuditEvent.__table__).order_by(AuditEvent.id)).mappings().all()
        prev = audit.GENESIS
        for row in rows:
            if row["id"] < start:
                prev = row["hash"]
                continue
            after = (edit or {}).get(row["id"], row["after"])
            fields = (
                row["at"],
                row["actor"],
                row["action"],
                row["entity"],
                row["entity_id"],
                row["before"],
                after,
            )
            digest = audit.event_hash(None, prev, *fields)
            conn.execute(
                text(
                    "UPDATE audit_events SET after = :a, prev_hash = :p, hash = :h, scheme = :s WHERE id = :i"
                ),
                {"a": after, "p": prev, "h": digest, "s": scheme or row["scheme"], "i": row["id"]},
            )
            prev = digest


def test_the_database_itself_refuses_to_change_or_delete_audit_rows(service: dict) -> None:
    _reviewed_and_signed(service)
    engine = service["app"].state.engine
    for statement in ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    if engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_events"))
    assert _verify(service)["ok"] is True


def test_deleting_the_newest_row_is_named_by_the_replay_and_by_an_exported_head(service: dict) -> None:
    doc, events = _reviewed_and_signed(service)
    head = service["client"].get("/api/audit/head", headers=service["auth"]["reviewer"]).json()
    assert head["id"] == events[-1]["id"] and events[-1]["action"] == "sign"
    engine = service["app"].state.engine
    drop_append_only_guard(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE id = :i"), {"i": head["id"]})
    res = _verify(service)
    assert res["ok"] is False
    reasons = [p["reason"] for p in res["problems"]]
    assert any(
        f"sample {doc['id']}: status is 'signed' but the audit" in r and "says 'open'" in r for r in reasons
    )
    res = _verify(service, head)
    assert any(
        f"event {head['id']} of the exported head is missing: the newest events were removed" in r
        for r in (p["reason"] for p in res["problems"])
    )


def test_a_row_edited_and_rechained_without_the_key_is_named(service: dict) -> None:
    doc, events = _reviewed_and_signed(service)
    target = next(e for e in events if e["action"] == "reclassify")
    engine = service["app"].state.engine
    drop_append_only_guard(engine)
    forged = json.dumps(
        {**target["after"], "label": doc["cells"][0]["predicted"]}, sort_keys=True, separators=(",", ":")
    )
    _rechain_without_key(engine, start=target["id"], edit={target["id"]: forged})
    res = _verify(service)
    assert res["ok"] is False and res["first_bad_id"] == target["id"], res
    assert "content changed" in res["reason"]


def test_a_chain_rewritten_wholesale_as_unkeyed_rows_is_named(service: dict) -> None:
    _reviewed_and_signed(service)
    engine = service["app"].state.engine
    drop_append_only_guard(engine)
    _rechain_without_key(engine, scheme="sha256")
    res = _verify(service)
    assert res["ok"] is False and any("not sealed by the audit key" in p["reason"] for p in res["problems"])


def test_records_changed_behind_the_audit_are_named(service: dict) -> None:
    doc, _ = _reviewed_and_signed(service)
    engine = service["app"].state.engine
    cell = doc["cells"][1]
    with engine.begin() as conn:  # no trigger guards these tables: the replay does
        conn.execute(text("UPDATE cells SET label = 'forged' WHERE id = :i"), {"i": cell["id"]})
        conn.execute(text("UPDATE users SET role = 'admin' WHERE name = 'tina'"))
    problems = [p for p in _verify(service)["problems"] if p["kind"] == "record"]
    reasons = " | ".join(p["reason"] for p in problems)
    assert f"cell {cell['id']}: label is 'forged' but the audit" in reasons
    assert "role is 'admin' but the audit" in reasons and {p["entity"] for p in problems} == {"cell", "user"}


def test_the_chain_is_keyed_outside_the_database(service: dict, tmp_path: Path) -> None:
    _reviewed_and_signed(service)
    settings = service["app"].state.settings
    runner = CliRunner()
    head = runner.invoke(
        cli, ["audit", "head", "--db", settings.db_url, "--audit-key", str(settings.audit_key_path)]
    )
    assert head.exit_code == 0, head.output
    saved = tmp_path / "head.json"
    saved.write_text(head.output)
    ok = runner.invoke(
        cli,
        [
            "audit",
            "verify",
            "--db",
            settings.db_url,
            "--audit-key",
            str(settings.audit_key_path),
            "--head",
            str(saved),
        ],
    )
    assert ok.exit_code == 0 and "chain intact, records match" in ok.output, ok.output
    wrong = tmp_path / "other.key"  # another key cannot vouch for these rows
    load_key(wrong)
    bad = runner.invoke(cli, ["audit", "verify", "--db", settings.db_url, "--audit-key", str(wrong)])
    assert bad.exit_code == 1 and "written without the audit key" in bad.output
    assert "not the key this database was written with" in bad.output
    missing = runner.invoke(
        cli, ["audit", "verify", "--db", settings.db_url, "--audit-key", str(tmp_path / "no")]
    )
    assert missing.exit_code == 1 and "unreadable" in missing.output and not (tmp_path / "no").exists()
    assert oct(settings.audit_key_path.stat().st_mode & 0o777) == "0o600"


def _legacy_database(path: Path) -> str:
    """A database as lablens 0.1 left it: schema 0002, a user and its unkeyed audit row."""
    url = f"sqlite:///{path}"
    engine = migrate_to(url, "0002")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, name, role, token_sha256, created_at) "
                "VALUES (1, 'tina', 'technician', 'h', '2026-01-01')"
            )
        )
        at, content = "2026-01-01T00:00:00.000000+00:00", json.dumps({"name": "tina", "role": "technician"})
        digest = audit.event_hash(None, audit.GENESIS, at, "cli", "create_user", "user", 1, "null", content)
        conn.execute(
            text(
                "INSERT INTO audit_events (at, actor, action, entity, entity_id, before, after, prev_hash, hash) "
                "VALUES (:at, 'cli', 'create_user', 'user', 1, 'null', :after, :prev, :h)"
            ),
            {"at": at, "after": content, "prev": audit.GENESIS, "h": digest},
        )
    engine.dispose()
    return url


def test_a_database_from_before_keyed_audits_is_sealed_once_at_its_upgrade(tmp_path: Path) -> None:
    from lablens.service.db import open_database, sessions

    key_file = tmp_path / "audit.key"
    key = load_key(key_file)
    with_key = open_database(_legacy_database(tmp_path / "a.db"), audit_key=key)  # e.g. lablens serve
    with sessions(with_key)() as s:
        assert audit.verify(s, key)["ok"] is True
        events = s.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
        assert [(e.scheme, e.action) for e in events] == [
            ("sha256", "create_user"),
            ("hmac-sha256", "chain_keyed"),
        ]
    url = _legacy_database(tmp_path / "b.db")
    unkeyed = open_database(url)  # migrated by a command without the key (export-reviews): left unsealed
    with sessions(unkeyed)() as s:
        res = audit.verify(s, key)
    assert not res["ok"] and "not sealed by the audit key" in res["problems"][0]["reason"]
    sealed = CliRunner().invoke(cli, ["audit", "seal", "--db", url, "--audit-key", str(key_file)])
    assert sealed.exit_code == 0 and "sealed" in sealed.output
    with sessions(unkeyed)() as s:
        assert audit.verify(s, key)["ok"] is True
    assert open_database(url, audit_key=key) is not None  # later opens seal nothing more
    with sessions(unkeyed)() as s:
        assert len(s.execute(select(AuditEvent)).all()) == 2
