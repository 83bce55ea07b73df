"""The model's life in the lab, end to end on phantoms:

train → serve → submit samples → the first model makes a systematic error (thick rings from a new staining lot,
never seen in training, called discs) → technicians correct it and sign → export → retrain → promote (the
report shows the ring class fixed, McNemar significant) → the service classifies new samples with the promoted
version while old samples keep their bundle hash; a deliberately worse candidate is refused with the reason.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lablens.config import RunConfig
from lablens.errors import RunError
from lablens.service.app import ServiceSettings
from lablens.service.export_reviews import export_reviews
from lablens.workflows.promote import promote
from lablens.workflows.retrain import retrain
from lablens.workflows.train import train

from conftest import shape_image, start_service, tiny_bundle, write_shape_folder

pytestmark = pytest.mark.slow
CLASSES = ("disc", "ring", "square")


def new_lot(label: str, rng: np.random.Generator, size: int = 40) -> np.ndarray:
    """A cell of the new lot: rings are drawn thick (11 px instead of 3: a small central hole), the rest as before."""
    if label != "ring":
        return shape_image(label, rng, size)
    img = np.clip(np.full((size, size, 3), 220.0) + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(
        np.uint8
    )
    c, r = size // 2 + int(rng.integers(-3, 4)), size // 4 + int(rng.integers(0, 3))
    cv2.circle(img, (c, c), r, tuple(int(v) for v in rng.integers(60, 140, 3)), 11)
    return img


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _submit(svc: dict, name: str, rng: np.random.Generator, per_class: int = 4) -> tuple[dict, list[str]]:
    truth = [c for c in CLASSES for _ in range(per_class)]
    files = [("files", (f"{i}.png", _png(new_lot(t, rng)), "image/png")) for i, t in enumerate(truth)]
    r = svc["client"].post(
        "/api/samples", data={"name": name, "task": "shapes"}, files=files, headers=svc["auth"]["technician"]
    )
    assert r.status_code == 201, r.text
    return r.json(), truth


def test_corrections_retrain_promote_and_serve(tmp_path: Path) -> None:
    # 1. train the first model on the lab's original images (thin rings only)
    data = write_shape_folder(tmp_path / "data", per_class=20, size=40)
    cfg = RunConfig()
    cfg.model.name, cfg.model.image_size = "handcrafted", 40
    cfg.train.threads, cfg.eval.bootstrap = 1, 0
    run = tmp_path / "run"
    train(data, run, cfg, progress=False)

    # 2. serve it from a registry
    reg = tmp_path / "registry"
    shutil.copytree(run / "bundle", reg / "shapes" / "v1")
    db = f"sqlite:///{tmp_path / 'lab.db'}"
    settings = ServiceSettings(None, db, str(tmp_path / "images"), registry=str(reg), min_confidence=0.0)
    svc = start_service(settings)
    c, auth = svc["client"], svc["auth"]
    v1_hash = c.get("/api/models", headers=auth["technician"]).json()[0]["bundle_hash"]

    # 3. ten samples of the new lot; technicians confirm or correct every cell, a reviewer signs
    rng = np.random.default_rng(11)
    wrong_rings = rings = 0
    first_sample = None
    for s in range(10):
        doc, truth = _submit(svc, f"S{s}", rng)
        first_sample = first_sample or doc
        for cell, t in zip(doc["cells"], truth, strict=True):
            body = {"action": "confirm"} if cell["predicted"] == t else {"action": "reclassify", "label": t}
            assert (
                c.post(f"/api/cells/{cell['id']}/review", json=body, headers=auth["technician"]).status_code
                == 200
            )
            if t == "ring":
                rings += 1
                wrong_rings += cell["predicted"] != "ring"
        assert c.post(f"/api/samples/{doc['id']}/sign", headers=auth["reviewer"]).status_code == 200
    assert wrong_rings / rings >= 0.5, "the first model should miss most thick rings (the systematic error)"
    monitor = c.get("/api/monitoring?bootstrap=100", headers=auth["technician"]).json()[0]
    # the OOD guard saw the new lot: its thick rings wait in the out-of-distribution queue (technicians still
    # classified them, and monitoring shows the share)
    assert monitor["share"]["out_of_distribution"] >= 0.25 and monitor["n_reviewed"] > 0

    # 4. export → retrain (test partition locked, latest review samples held out) → promote
    export_reviews(db, tmp_path / "images", tmp_path / "export")
    res = retrain(run, [tmp_path / "export"], tmp_path / "retrain", progress=False)
    report_dir = tmp_path / "promotion"
    doc = promote(
        res.bundle, run / "bundle", [data, res.locked_reviews], report_dir, n_boot=200, progress=False
    )
    ring = doc["per_class"]["ring"]
    assert doc["decision"]["promote"] is True
    assert ring["sensitivity_candidate"] > ring["sensitivity_current"]  # the error is fixed
    assert doc["mcnemar"]["p_value"] < 0.05 and doc["accuracy"]["difference"]["value"] > 0
    assert "ring" in (report_dir / "report.html").read_text()

    # 5. the admin promotes the candidate with its report; new samples get v2, old ones keep v1
    shutil.copytree(res.bundle, reg / "shapes" / "v2")
    v2 = c.post("/api/admin/models/scan", headers=auth["admin"]).json()[0]
    report = json.loads((report_dir / "promotion.json").read_text())
    r = c.post(f"/api/admin/models/{v2['id']}/activate", json={"promotion": report}, headers=auth["admin"])
    assert r.status_code == 200 and r.json()["action"] == "promote_model"
    new, truth = _submit(svc, "after", np.random.default_rng(99))
    assert new["bundle_hash"] == v2["bundle_hash"] != v1_hash
    rings_now = [cell["predicted"] for cell, t in zip(new["cells"], truth, strict=True) if t == "ring"]
    assert sum(p == "ring" for p in rings_now) >= len(rings_now) - 1
    old = c.get(f"/api/samples/{first_sample['id']}", headers=auth["technician"]).json()
    assert old["bundle_hash"] == v1_hash and {cell["bundle_hash"] for cell in old["cells"]} == {v1_hash}

    # 6. a deliberately worse candidate (one epoch of a tiny CNN on 12 images) is refused with the reason
    worse, _ = tiny_bundle(tmp_path / "worse", "test_resnet", epochs=1, size=40)
    with pytest.raises(RunError, match=r"promotion refused: .*sensitivity"):
        promote(
            worse, res.bundle, [data, res.locked_reviews], tmp_path / "refused", n_boot=200, progress=False
        )
    shutil.copytree(worse, reg / "shapes" / "v3")
    v3 = c.post("/api/admin/models/scan", headers=auth["admin"]).json()[0]
    refused = json.loads((tmp_path / "refused" / "promotion.json").read_text())
    r = c.post(f"/api/admin/models/{v3['id']}/activate", json={"promotion": refused}, headers=auth["admin"])
    assert r.status_code == 409 and "the report refused it" in r.json()["detail"]
    assert c.get("/api/audit/verify", headers=auth["reviewer"]).json()["ok"] is True
