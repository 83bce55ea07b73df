"""Samples submitted as whole fields (cells detected, cropped, classified), quality flags, schema migrations."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from fastapi.testclient import TestClient
from PIL import Image
from service_fixtures import migrate_to
from sqlalchemy import text

from lablens.phantoms import get_task
from lablens.phantoms.write import write_phantoms
from lablens.service.app import ServiceSettings, create_app
from lablens.service.auth import create_user
from lablens.service.db import sessions, upgrade

from conftest import tiny_bundle, tiny_mil_bundle


def test_submit_fields_detects_and_classifies_their_cells(tmp_path: Path) -> None:
    bundle, _ = tiny_bundle(tmp_path / "b")
    root = tmp_path / "fields"
    write_phantoms(get_task("blood-cells"), root, n=5, seed=3, fields=True, size=320)
    man = pd.read_csv(root / "manifest.csv")
    app = create_app(ServiceSettings(str(bundle), f"sqlite:///{tmp_path / 'l.db'}", str(tmp_path / "img")))
    with sessions(app.state.engine)() as s:
        h = {"Authorization": f"Bearer {create_user(s, app.state.service.audit_key, 'tina', 'technician')}"}
        s.commit()
    c = TestClient(app)
    man = man.head(2)
    files = [("files", (Path(p).name, (root / p).read_bytes(), "image/png")) for p in man["path"]]
    scale = float(man["field_um"].mean() / 320)
    r = c.post(
        "/api/samples", data={"name": "F", "kind": "fields", "um_per_px": scale}, files=files, headers=h
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["n_cells"] >= 3
    fields = {Path(p).name for p in man["path"]}
    for cell in doc["cells"]:
        assert cell["source"]["field"] in fields and len(cell["source"]["box"]) == 4
        assert cell["name"].split("#")[0] in fields and isinstance(cell["flags"], list)
    img = Image.open(io.BytesIO(c.get(doc["cells"][0]["image"], headers=h).content))
    assert img.size == (32, 32)  # cropped at the preset's physical size, resized to the bundle's input
    bad = c.post(
        "/api/samples", data={"name": "F", "kind": "fields", "task": "nailfold"}, files=files, headers=h
    )
    assert bad.status_code == 422 and "whole frames" in bad.json()["detail"]


def test_upgrade_from_the_first_schema_keeps_the_data(tmp_path: Path) -> None:
    engine = migrate_to(f"sqlite:///{tmp_path / 'old.db'}", "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO samples (id, name, status, bundle_hash, created_by, created_at) "
                "VALUES (1, 'old', 'open', 'h', 'tina', '2026-01-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO cells (sample_id, original_name, image_sha256, predicted, confidence, probabilities, "
                "status) VALUES (1, 'a.png', 'x', 'disc', 0.9, '{}', 'pending')"
            )
        )
    upgrade(engine)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT original_name, flags, source, bundle_hash, gate FROM cells")).one()
        task = conn.execute(text("SELECT task FROM samples")).scalar_one()
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    # 0005: a cell keeps the hash of the bundle its sample was classified with; old samples serve task "*"
    assert tuple(row) == ("a.png", "[]", None, "h", "classified") and task == "*" and version == "0005"


def test_a_multiple_instance_bundle_calls_the_sample_and_shows_which_cells_drove_it(tmp_path: Path) -> None:
    bundle, fields = tiny_mil_bundle(tmp_path)
    man = pd.read_csv(fields / "manifest.csv", dtype=str)
    man = man[man["label"].isin(["centromere", "homogeneous"])]
    app = create_app(ServiceSettings(str(bundle), f"sqlite:///{tmp_path / 'l.db'}", str(tmp_path / "img")))
    with sessions(app.state.engine)() as s:
        h = {"Authorization": f"Bearer {create_user(s, app.state.service.audit_key, 'tina', 'technician')}"}
        rita = {"Authorization": f"Bearer {create_user(s, app.state.service.audit_key, 'rita', 'reviewer')}"}
        s.commit()
    c = TestClient(app)
    first = man.iloc[0]
    files = [("files", (Path(first["path"]).name, (fields / first["path"]).read_bytes(), "image/png"))]
    r = c.post(
        "/api/samples",
        data={
            "name": "serum-1",
            "kind": "fields",
            "task": "ana",
            "um_per_px": float(first["field_um"]) / 256,
        },
        files=files,
        headers=h,
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    assert (
        doc["call"]["predicted"] in {"centromere", "homogeneous"}
        and "multiple-instance" in doc["call"]["method"]
    )
    assert abs(sum(doc["call"]["probabilities"].values()) - 1) < 1e-3
    attention = [cell["attention"] for cell in doc["cells"]]
    assert len(attention) >= 3 and all(a > 0 for a in attention) and abs(sum(attention) - 1) < 1e-2
    again = c.get(f"/api/samples/{doc['id']}", headers=h).json()
    assert again["call"] == doc["call"] and [x["attention"] for x in again["cells"]] == attention
    cam = c.get(f"/api/cells/{doc['cells'][0]['id']}/gradcam", headers=h)
    assert cam.status_code == 404 and "Grad-CAM" in cam.json()["detail"]  # said plainly, never a 500
    verify = c.get("/api/audit/verify", headers=rita)
    assert verify.status_code == 200 and verify.json()["ok"], verify.text
