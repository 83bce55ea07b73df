"""The quality gate and the out-of-distribution guard in the service: blurred fields' cells and foreign cells go
to their own queues, are left out of the counts, and the sample says why."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lablens.config import RunConfig
from lablens.phantoms import write_phantoms
from lablens.service.app import ServiceSettings
from lablens.workflows.degrade import degrade
from lablens.workflows.train import train

from conftest import start_service


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate")
    write_phantoms("blood-cells", root / "cells", n=160, seed=1, size=48)
    write_phantoms("blood-cells", root / "fields", n=6, seed=2, fields=True, size=320)
    write_phantoms("ana-hep2", root / "ana", n=24, seed=0, size=48)
    cfg = RunConfig()
    cfg.model.name, cfg.model.image_size = "handcrafted", 48
    cfg.train.threads, cfg.eval.bootstrap = 1, 0
    cells = train(root / "cells", root / "crun", cfg, progress=False).bundles[0]
    degrade(root / "cells", root / "deg", levels="0-4", kinds="defocus,gaussian", progress=False)
    cfg.model.name, cfg.data.label_column = "blur_level", "blur_level"
    quality = train(root / "deg", root / "qrun", cfg, progress=False).bundles[0]
    settings = ServiceSettings(
        str(cells),
        f"sqlite:///{root / 'l.db'}",
        str(root / "img"),
        quality=str(quality),
        min_confidence=0.0,
        four_eyes=False,
    )
    return {"root": root, "svc": start_service(settings)}  # type: ignore[dict-item]


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_blurred_fields_cells_are_not_evaluable(gated: dict) -> None:
    root, svc = gated["root"], gated["svc"]
    man = pd.read_csv(root / "fields" / "manifest.csv").head(4)
    files = []
    for i, p in enumerate(man["path"]):
        img = np.asarray(Image.open(root / "fields" / p).convert("RGB"))
        if i >= 2:
            img = cv2.GaussianBlur(img, (0, 0), 6)  # defocused fields
        files.append(("files", (f"f{i}.png", _png(img), "image/png")))
    scale = float(man["field_um"].mean() / 320)
    r = svc["client"].post(
        "/api/samples",
        data={"name": "blurred", "kind": "fields", "um_per_px": scale},
        files=files,
        headers=svc["auth"]["technician"],
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    by_field: dict[str, set[str]] = {}
    for cell in doc["cells"]:
        by_field.setdefault(cell["source"]["field"], set()).add(cell["gate"])
        assert cell["quality_score"] is not None
    sharp = [by_field[f] for f in ("f0.png", "f1.png") if f in by_field]
    blurred = [by_field[f] for f in ("f2.png", "f3.png") if f in by_field]
    assert blurred and all(g == {"not_evaluable"} for g in blurred), by_field
    assert all("not_evaluable" not in g for g in sharp), by_field
    n_held = sum(c["queue"] == "not_evaluable" for c in doc["cells"])
    assert doc["n_not_evaluable"] == n_held > 0
    assert sum(doc["counts"].values()) == doc["n_cells"] - n_held - doc["n_out_of_distribution"]
    # the technician may still classify a held-back cell: it then counts with their label
    held = next(c for c in doc["cells"] if c["queue"] == "not_evaluable")
    r = svc["client"].post(
        f"/api/cells/{held['id']}/review",
        json={"action": "reclassify", "label": "neutrophil"},
        headers=svc["auth"]["technician"],
    )
    assert r.status_code == 200 and r.json()["queue"] == "reviewed"


def test_foreign_cells_are_out_of_distribution_and_the_sample_is_flagged(gated: dict) -> None:
    root, svc = gated["root"], gated["svc"]
    ana = sorted((root / "ana").rglob("*.png"))[:12]
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in ana]
    r = svc["client"].post(
        "/api/samples", data={"name": "ana"}, files=files, headers=svc["auth"]["technician"]
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["n_out_of_distribution"] == 12 and doc["counts"] == {}
    assert all(c["queue"] == "out_of_distribution" and c["final"] is None for c in doc["cells"])
    assert doc["ood"]["flagged"] and "do not look like the training images" in doc["ood"]["reasons"][0]
    blood = sorted((root / "cells").rglob("*.png"))[:12]
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in blood]
    doc = (
        svc["client"]
        .post("/api/samples", data={"name": "blood"}, files=files, headers=svc["auth"]["technician"])
        .json()
    )
    assert doc["n_out_of_distribution"] <= 1 and not doc["ood"]["flagged"]
