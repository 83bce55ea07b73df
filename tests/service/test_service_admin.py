"""A second pair of eyes before sign-off, and user administration (API and command line), every change audited."""

from __future__ import annotations

from pathlib import Path

from service_fixtures import submit
from typer.testing import CliRunner

from lablens.cli import app as cli


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_submitter_or_the_only_reviewer_cannot_sign_and_the_refusal_is_audited(service: dict) -> None:
    c, auth = service["client"], service["auth"]
    own = submit(service, 2, "own", who="reviewer")  # rita submits …
    r = c.post(f"/api/samples/{own['id']}/sign", headers=auth["reviewer"])  # … and may not sign it herself
    assert r.status_code == 403 and "rita submitted sample" in r.json()["detail"]
    lone = submit(service, 2, "lone")  # tina submits, rita reviews every cell alone
    for cell in lone["cells"]:
        c.post(f"/api/cells/{cell['id']}/review", json={"action": "confirm"}, headers=auth["reviewer"])
    r = c.post(f"/api/samples/{lone['id']}/sign", headers=auth["reviewer"])
    assert r.status_code == 403 and "rita is the only reviewer" in r.json()["detail"]
    c.post(
        f"/api/cells/{lone['cells'][0]['id']}/review", json={"action": "confirm"}, headers=auth["technician"]
    )
    assert c.post(f"/api/samples/{lone['id']}/sign", headers=auth["reviewer"]).status_code == 200
    refused = c.get("/api/audit", params={"entity": "sample"}, headers=auth["reviewer"]).json()
    refusals = [e for e in refused if e["action"] == "sign_refused"]
    assert [(e["actor"], e["entity_id"]) for e in refusals] == [("rita", own["id"]), ("rita", lone["id"])]
    assert c.get("/api/audit/verify", headers=auth["reviewer"]).json()["ok"] is True


def test_a_one_person_lab_may_lift_the_rule(service: dict) -> None:
    service["app"].state.settings.four_eyes = False
    own = submit(service, 2, "own", who="reviewer")
    assert (
        service["client"]
        .post(f"/api/samples/{own['id']}/sign", headers=service["auth"]["reviewer"])
        .status_code
        == 200
    )


def test_admins_list_create_rotate_revoke_and_deactivate_users(service: dict) -> None:
    c, auth = service["client"], service["auth"]
    assert c.get("/api/admin/users", headers=auth["reviewer"]).status_code == 403
    users = c.get("/api/admin/users", headers=auth["admin"]).json()
    assert [(u["name"], u["role"], u["active"], u["has_token"]) for u in users] == [
        ("tina", "technician", True, True),
        ("rita", "reviewer", True, True),
        ("adam", "admin", True, True),
    ]
    new = c.post("/api/admin/users", json={"name": "vera", "role": "reviewer"}, headers=auth["admin"])
    assert (
        new.status_code == 201
        and c.get("/api/whoami", headers=_bearer(new.json()["token"])).json()["name"] == "vera"
    )
    assert c.post("/api/admin/users", json={"name": "vera"}, headers=auth["admin"]).status_code == 422
    tina = next(u for u in users if u["name"] == "tina")
    rotated = c.post(f"/api/admin/users/{tina['id']}/rotate-token", headers=auth["admin"]).json()
    assert c.get("/api/whoami", headers=auth["technician"]).status_code == 401  # the old token is dead
    assert c.get("/api/whoami", headers=_bearer(rotated["token"])).status_code == 200
    c.post(f"/api/admin/users/{tina['id']}/revoke", headers=auth["admin"])
    assert c.get("/api/whoami", headers=_bearer(rotated["token"])).status_code == 401
    rita = next(u for u in users if u["name"] == "rita")
    c.post(f"/api/admin/users/{rita['id']}/deactivate", headers=auth["admin"])
    assert c.get("/api/whoami", headers=auth["reviewer"]).status_code == 401
    c.post(f"/api/admin/users/{rita['id']}/activate", headers=auth["admin"])
    assert c.get("/api/whoami", headers=auth["reviewer"]).status_code == 200
    adam = next(u for u in users if u["name"] == "adam")
    assert c.post(f"/api/admin/users/{adam['id']}/deactivate", headers=auth["admin"]).status_code == 409
    trail = c.get("/api/audit", params={"entity": "user"}, headers=auth["admin"]).json()
    actions = ["create_user", "rotate_token", "revoke_token", "deactivate_user", "activate_user"]
    assert [e["action"] for e in trail] == ["create_user"] * 3 + actions
    assert all(e["actor"] == "adam" for e in trail[3:])
    assert c.get("/api/audit/verify", headers=auth["admin"]).json()["ok"] is True


def test_users_from_the_command_line(service: dict, tmp_path: Path) -> None:
    settings = service["app"].state.settings
    base = ["--db", settings.db_url, "--audit-key", str(settings.audit_key_path)]
    run = CliRunner().invoke
    listed = run(cli, ["users", "list", *base])
    assert listed.exit_code == 0 and "tina" in listed.output and "active" in listed.output
    rotated = run(cli, ["users", "rotate-token", "tina", *base])
    assert rotated.exit_code == 0
    token = rotated.output.strip().splitlines()[-1]
    assert service["client"].get("/api/whoami", headers=_bearer(token)).status_code == 200
    assert run(cli, ["users", "deactivate", "tina", *base]).exit_code == 0
    assert service["client"].get("/api/whoami", headers=_bearer(token)).status_code == 401
    assert "deactivated" in run(cli, ["users", "list", *base]).output
    assert run(cli, ["users", "activate", "tina", *base]).exit_code == 0
    assert run(cli, ["users", "revoke", "tina", *base]).exit_code == 0
    assert service["client"].get("/api/whoami", headers=_bearer(token)).status_code == 401
    missing = run(cli, ["users", "revoke", "nobody", *base])
    assert missing.exit_code == 1 and "no user named 'nobody'" in missing.output
    assert run(cli, ["audit", "verify", *base]).exit_code == 0
