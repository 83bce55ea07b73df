"""The review service through its HTTP API: submit → review → sign → report and audit; security refusals."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from service_fixtures import png as _png
from service_fixtures import submit as _submit


def test_submit_review_sign_and_the_audit_trail(service: dict) -> None:
    c, auth = service["client"], service["auth"]
    doc = _submit(service)
    assert doc["n_cells"] == 6 and doc["status"] == "open" and not doc["skipped"]
    classes = c.get("/api/health").json()["classes"]
    first, second = doc["cells"][0], doc["cells"][1]
    other = next(k for k in classes if k != first["predicted"])
    r = c.post(
        f"/api/cells/{first['id']}/review",
        json={"action": "reclassify", "label": other},
        headers=auth["technician"],
    )
    assert r.status_code == 200 and r.json()["status"] == "reclassified" and r.json()["final"] == other
    r = c.post(f"/api/cells/{second['id']}/review", json={"action": "confirm"}, headers=auth["technician"])
    assert r.json()["status"] == "confirmed"
    assert c.get(f"/api/cells/{first['id']}/image", headers=auth["technician"]).content[:4] == b"\x89PNG"
    r = c.post(f"/api/samples/{doc['id']}/sign", headers=auth["reviewer"])
    assert r.status_code == 200 and r.json()["status"] == "signed" and r.json()["signed_by"] == "rita"
    assert sum(r.json()["counts"].values()) == 6
    r = c.post(f"/api/cells/{second['id']}/review", json={"action": "confirm"}, headers=auth["technician"])
    assert r.status_code == 409  # a signed sample is closed
    trail = c.get("/api/audit", params={"entity": "cell"}, headers=auth["reviewer"]).json()
    assert [(e["actor"], e["action"]) for e in trail] == [("tina", "reclassify"), ("tina", "confirm")]
    assert trail[0]["before"]["status"] == "pending" and trail[0]["after"]["label"] == other
    assert c.get("/api/audit/verify", headers=auth["reviewer"]).json()["ok"] is True
    ag = c.get("/api/agreement", headers=auth["technician"]).json()
    assert ag["n_reviewed"] == 2 and ag["agreement"] == 0.5


def test_tokens_and_roles(service: dict) -> None:
    c, auth = service["client"], service["auth"]
    assert c.get("/api/samples").status_code == 401
    assert c.get("/api/samples", headers={"Authorization": "Bearer nope"}).status_code == 401
    doc = _submit(service, 2)
    r = c.post(f"/api/samples/{doc['id']}/sign", headers=auth["technician"])
    assert r.status_code == 403 and "reviewer" in r.json()["detail"]
    assert c.get("/api/audit", headers=auth["technician"]).status_code == 403
    assert c.get("/api/audit", headers=auth["admin"]).status_code == 200


def test_upload_limits_types_and_names(service: dict) -> None:
    c, h = service["client"], service["auth"]["technician"]
    big = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)  # ~120 kB as PNG
    r = c.post(
        "/api/samples", data={"name": "x"}, files=[("files", ("big.png", _png(big), "image/png"))], headers=h
    )
    assert r.status_code == 413 and "big.png" in r.json()["detail"]
    r = c.post(
        "/api/samples",
        data={"name": "x"},
        files=[("files", ("notes.txt", b"hello", "text/plain"))],
        headers=h,
    )
    assert r.status_code == 415 and "notes.txt" in r.json()["detail"]
    good = _png(service["images"][0])
    for bad in ("../../etc/passwd.png", "..\\x.png", "a/b.png", "/abs.png"):
        r = c.post("/api/samples", data={"name": "x"}, files=[("files", (bad, good, "image/png"))], headers=h)
        assert r.status_code == 400 and "refused" in r.json()["detail"], bad
    mixed = [
        ("files", ("ok.png", good, "image/png")),
        ("files", ("junk.png", b"\x89PNG broken", "image/png")),
    ]
    r = c.post("/api/samples", data={"name": "mixed"}, files=mixed, headers=h)
    assert r.status_code == 201 and r.json()["n_cells"] == 1 and r.json()["skipped"][0]["name"] == "junk.png"
    stored = list((service["tmp"] / "images").rglob("*"))
    assert all(".." not in p.name for p in stored)


def test_openapi_schema_lists_the_endpoints(service: dict) -> None:
    paths = service["client"].get("/openapi.json").json()["paths"]
    for p in (
        "/api/samples",
        "/api/cells/{cell_id}/review",
        "/api/samples/{sample_id}/sign",
        "/api/audit/verify",
    ):
        assert p in paths


def test_concurrent_reviews_keep_one_unbroken_chain(service: dict) -> None:
    c, h = service["client"], service["auth"]["technician"]
    cells = [cell["id"] for _ in range(4) for cell in _submit(service, 12)["cells"]]

    def act(cell_id: int) -> int:
        return c.post(f"/api/cells/{cell_id}/review", json={"action": "confirm"}, headers=h).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(act, cells))
    assert codes == [200] * len(cells)
    res = c.get("/api/audit/verify", headers=service["auth"]["reviewer"]).json()
    # the model registered and activated at start-up, users, submissions, reviews
    assert res["ok"] is True and res["events"] == 2 + 3 + 4 + len(cells)


def test_export_reviews_writes_signed_labels_as_a_training_set(service: dict) -> None:
    from typer.testing import CliRunner

    from lablens.cli import app as cli

    c, auth = service["client"], service["auth"]
    classes = c.get("/api/health").json()["classes"]
    signed, open_ = _submit(service, 3, "signed"), _submit(service, 2, "open")
    first = signed["cells"][0]
    other = next(k for k in classes if k != first["predicted"])
    c.post(
        f"/api/cells/{first['id']}/review",
        json={"action": "reclassify", "label": other},
        headers=auth["technician"],
    )
    c.post(
        f"/api/cells/{signed['cells'][1]['id']}/review",
        json={"action": "confirm"},
        headers=auth["technician"],
    )
    c.post(
        f"/api/cells/{open_['cells'][0]['id']}/review", json={"action": "confirm"}, headers=auth["technician"]
    )
    assert c.post(f"/api/samples/{signed['id']}/sign", headers=auth["reviewer"]).status_code == 200
    settings = service["app"].state.settings
    out = service["tmp"] / "reviews"
    args = ["export-reviews", "--db", settings.db_url, "--storage", settings.storage, "-o"]
    r = CliRunner().invoke(cli, [*args, str(out)])
    assert r.exit_code == 0 and "1 reclassified" in r.output, r.output
    m = pd.read_csv(out / "manifest.csv")
    assert len(m) == 2 and set(m["group"]) == {f"sample-{signed['id']}"}
    row = m[m["status"] == "reclassified"].iloc[0]
    assert row["label"] == other and row["predicted"] == first["predicted"] and (out / row["path"]).is_file()
    p = np.array(sorted(first["probabilities"].values(), reverse=True))
    assert np.isclose(row["review_score"], 1 - (p[0] - p[1]), atol=1e-4)  # the score suggest ranks by
    assert CliRunner().invoke(cli, [*args, str(out)]).exit_code == 1  # never overwritten
    r = CliRunner().invoke(cli, [*args, str(service["tmp"] / "all"), "--include-unsigned"])
    assert r.exit_code == 0 and len(pd.read_csv(service["tmp"] / "all" / "manifest.csv")) == 3


def test_review_first_lists_open_pending_cells_most_uncertain_first(service: dict) -> None:
    c, auth = service["client"], service["auth"]
    doc = _submit(service)
    c.post(f"/api/cells/{doc['cells'][0]['id']}/review", json={"action": "confirm"}, headers=auth["technician"])
    rows = c.get("/api/review-first", params={"limit": 1000}, headers=auth["technician"]).json()
    mine = [r for r in rows if r["sample_id"] == doc["id"]]
    assert {r["id"] for r in mine} == {cell["id"] for cell in doc["cells"][1:]}  # the reviewed cell is gone
    scores = [r["review_score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    for r in mine:
        p = sorted(r["probabilities"].values(), reverse=True)
        assert np.isclose(r["review_score"], 1 - (p[0] - p[1]), atol=1e-4)
    assert len(c.get("/api/review-first", params={"limit": 2}, headers=auth["technician"]).json()) == 2
