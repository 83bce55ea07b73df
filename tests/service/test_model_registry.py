"""The service's model registry: versions per task, proven promotion, rollback, audited, hash per cell."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from lablens.service.app import ServiceSettings
from lablens.workflows.promote import promote

from conftest import service_db_url, start_service, tiny_bundle, write_shape_folder


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("registry")
    first, images = tiny_bundle(root / "first", "handcrafted")
    second, _ = tiny_bundle(root / "second", "handcrafted")  # the same recipe: promotable, another hash
    locked = write_shape_folder(root / "locked", per_class=10, size=40, seed=5)
    return {"first": first, "second": second, "locked": locked, "root": root, "images": images}


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _submit(svc: dict, images: np.ndarray, task: str, name: str = "S") -> dict:
    files = [("files", (f"c{i}.png", _png(im), "image/png")) for i, im in enumerate(images)]
    r = svc["client"].post(
        "/api/samples", data={"name": name, "task": task}, files=files, headers=svc["auth"]["technician"]
    )
    assert r.status_code == 201, r.text
    return r.json()


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_promotion_needs_its_report_and_rollback_a_reason(bundles: dict, tmp_path: Path, db: str) -> None:
    reg = tmp_path / "registry"
    shutil.copytree(bundles["first"], reg / "blood" / "v1")
    settings = ServiceSettings(
        None, service_db_url(db, tmp_path), str(tmp_path / "images"), registry=str(reg), min_confidence=0.0
    )
    svc = start_service(settings)
    c, admin = svc["client"], svc["auth"]["admin"]
    models = c.get("/api/models", headers=svc["auth"]["technician"]).json()
    assert [(m["task"], m["version"], m["active"]) for m in models] == [("blood", 1, True)]
    old = _submit(svc, bundles["images"][:4], "blood", "before")
    h1 = models[0]["bundle_hash"]
    assert old["bundle_hash"] == h1 and {cell["bundle_hash"] for cell in old["cells"]} == {h1}
    bad = c.post(
        "/api/samples",
        data={"name": "x", "task": "ana"},
        files=[("files", ("a.png", _png(bundles["images"][0])))],
        headers=svc["auth"]["technician"],
    )
    assert bad.status_code == 422 and "task 'ana': no model serves it (tasks: blood)" in bad.json()["detail"]

    # a candidate dropped into the registry is registered by a scan, not activated
    shutil.copytree(bundles["second"], reg / "blood" / "v2")
    new = c.post("/api/admin/models/scan", headers=admin).json()
    assert [(m["version"], m["active"]) for m in new] == [(2, False)]
    assert c.post("/api/admin/models/scan", headers=svc["auth"]["reviewer"]).status_code == 403
    v2 = new[0]
    refused = c.post(f"/api/admin/models/{v2['id']}/activate", json={}, headers=admin)
    assert refused.status_code == 409 and "send the `lablens promote` report" in refused.json()["detail"]

    locked = [bundles["locked"]]
    wrong = promote(
        reg / "blood" / "v1", reg / "blood" / "v2", locked, tmp_path / "w", n_boot=50, progress=False
    )
    r = c.post(f"/api/admin/models/{v2['id']}/activate", json={"promotion": wrong}, headers=admin)
    assert r.status_code == 409 and "not this model" in r.json()["detail"]  # a report about other models
    doc = promote(
        reg / "blood" / "v2", reg / "blood" / "v1", locked, tmp_path / "p", n_boot=50, progress=False
    )
    assert doc["decision"]["promote"] is True
    report = json.loads((tmp_path / "p" / "promotion.json").read_text())
    ok = c.post(
        f"/api/admin/models/{v2['id']}/activate", json={"promotion": report, "reason": "fixes"}, headers=admin
    )
    assert ok.status_code == 200 and ok.json()["action"] == "promote_model"

    after = _submit(svc, bundles["images"][:4], "blood", "after")
    assert after["bundle_hash"] == v2["bundle_hash"] != h1
    again = c.get(f"/api/samples/{old['id']}", headers=svc["auth"]["technician"]).json()
    assert {cell["bundle_hash"] for cell in again["cells"]} == {h1}  # old samples keep their model
    # reclassification offers the classes of the cell's own model
    cell = again["cells"][0]["id"]
    r = c.post(
        f"/api/cells/{cell}/review",
        json={"action": "reclassify", "label": "ring"},
        headers=svc["auth"]["technician"],
    )
    assert r.status_code == 200

    v1 = models[0]
    assert (
        c.post(f"/api/admin/models/{v1['id']}/activate", json={}, headers=admin).status_code == 409
    )  # no reason
    back = c.post(f"/api/admin/models/{v1['id']}/activate", json={"reason": "drift on site B"}, headers=admin)
    assert back.status_code == 200 and back.json()["action"] == "rollback_model"
    events = c.get("/api/audit", headers=svc["auth"]["reviewer"]).json()
    actions = [e["action"] for e in events if e["entity"] == "model"]
    assert actions[:2] == ["register_model", "activate_model"] and actions[-2:] == [
        "promote_model",
        "rollback_model",
    ]
    promoted = next(e for e in events if e["action"] == "promote_model")
    assert promoted["before"]["version"] == 1 and promoted["after"]["version"] == 2
    assert promoted["after"]["promotion"]["decision"]["promote"] is True
    verify = c.get("/api/audit/verify", headers=svc["auth"]["reviewer"]).json()
    assert verify["ok"] is True, verify
    # the model table is held to its events: an activation behind the audit's back is named
    with svc["app"].state.engine.begin() as conn:
        conn.execute(text("UPDATE models SET active = NOT active"))
    verify = c.get("/api/audit/verify", headers=svc["auth"]["reviewer"]).json()
    assert verify["ok"] is False and any("model 1: active" in p["reason"] for p in verify["problems"])


def test_serve_bundle_serves_that_bundle_and_a_missing_one_is_named(bundles: dict, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    first = start_service(ServiceSettings(str(bundles["first"]), db, str(tmp_path / "img")))
    h1 = first["client"].get("/api/health").json()["bundle_hash"]
    moved = tmp_path / "second"
    shutil.copytree(bundles["second"], moved)
    # restarted with another bundle
    again = start_service(ServiceSettings(str(moved), db, str(tmp_path / "img")), tokens=first["tokens"])
    c = again["client"]
    active = [m for m in c.get("/api/models", headers=again["auth"]["technician"]).json() if m["active"]]
    assert [m["version"] for m in active] == [2] and active[0]["bundle_hash"] != h1
    events = c.get("/api/audit", headers=again["auth"]["reviewer"]).json()
    switch = [e for e in events if e["action"] == "activate_model"][-1]
    assert switch["after"]["reason"] == "lablens serve --bundle" and switch["before"]["version"] == 1
    shutil.rmtree(moved)  # the bundle disappears before it was first used: named, never a 500
    health = c.get("/api/health").json()
    assert "error" in health["tasks"]["*"]
    files = [("files", ("a.png", _png(bundles["images"][0]), "image/png"))]
    r = c.post("/api/samples", data={"name": "x"}, files=files, headers=again["auth"]["technician"])
    assert r.status_code == 422 and "model * v2" in r.json()["detail"]
