"""One field pipeline: the same fields through ``lablens analyze``, ``analyze --engine ray`` and the review service
give the same cells — boxes, crop sha256, calls, gate and OOD status, flags — and the same sample verdict, for a
blood bundle (with a quality gate), a nuclear-ANA bundle and a cytoplasmic-ANA bundle (whole cells)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lablens.cli import app as cli
from lablens.config import RunConfig
from lablens.phantoms import write_phantoms
from lablens.workflows.analyze import analyze
from lablens.workflows.degrade import degrade
from lablens.workflows.train import train

from conftest import require_ray, start_service

runner = CliRunner()


def _handcrafted(data: Path, run: Path, size: int, label: str = "label") -> Path:
    cfg = RunConfig()
    cfg.model.name, cfg.model.image_size = "handcrafted", size
    cfg.data.label_column = label
    cfg.train.threads, cfg.eval.bootstrap = 1, 0
    if label == "blur_level":
        cfg.model.name = "blur_level"
    return train(data, run, cfg, progress=False).bundles[0]


def _fields_csv(root: Path, fields: Path, size: int, n: int) -> Path:
    """One sample per field (its file name), each at its own scale."""
    man = pd.read_csv(fields / "manifest.csv", dtype=str).head(n)
    pd.DataFrame(
        {
            "path": [str(fields / p) for p in man["path"]],
            "sample": [Path(p).stem for p in man["path"]],
            "um_per_px": man["field_um"].astype(float) / size,
        }
    ).to_csv(root / "fields.csv", index=False)
    return root / "fields.csv"


def _cropped_bundle(root: Path, task: str, size: int, whole: bool) -> tuple[Path, Path, str]:
    """A bundle trained on cells cut from annotated phantom fields (``lablens crop-cells``: it records the crop
    geometry), and a fields CSV of other fields."""
    n = 12 if whole else 32  # four fields (slides) per pattern
    write_phantoms(task, root / "train", n=n, seed=3, fields=True, size=size)
    train_csv = _fields_csv(root / "train", root / "train", size, n)
    boxes = pd.read_csv(root / "train" / "cells.csv", dtype=str)
    if whole:
        boxes = boxes[boxes["pattern"] != "negative"]
    boxes = boxes.assign(path=[str(root / "train" / p) for p in boxes["path"]])
    boxes[["path", "pattern", "x0", "y0", "x1", "y1"]].to_csv(root / "boxes.csv", index=False)
    args = ["crop-cells", str(train_csv), "--annotations", str(root / "boxes.csv"), "--label", "pattern"]
    r = runner.invoke(cli, [*args, *(["--whole-cells"] if whole else []), "--out", str(root / "cells"), "-q"])
    assert r.exit_code == 0, r.output
    bundle = _handcrafted(root / "cells", root / "run", 32)
    write_phantoms(task, root / "new", n=8, seed=9, fields=True, size=size)
    return bundle, _fields_csv(root, root / "new", size, 3), "ana"


@pytest.fixture(scope="module", params=["blood", "ana-nuclear", "ana-cytoplasmic"])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp(request.param)
    quality = None
    if request.param == "blood":
        write_phantoms("blood-cells", root / "cells", n=120, seed=1, size=48)
        bundle = _handcrafted(root / "cells", root / "run", 48)
        degrade(root / "cells", root / "deg", levels="0-4", kinds="defocus,gaussian", progress=False)
        quality = _handcrafted(root / "deg", root / "qrun", 48, label="blur_level")
        write_phantoms("blood-cells", root / "f", n=6, seed=2, fields=True, size=320)
        csv = _fields_csv(root, root / "f", 320, 3)
        rows = pd.read_csv(csv)  # one field defocused: the gate holds all of its cells back
        blurred = root / "blurred.png"
        cv2.imwrite(str(blurred), cv2.GaussianBlur(cv2.imread(rows.loc[2, "path"]), (0, 0), 6))
        rows.loc[2, "path"], rows.loc[2, "sample"] = str(blurred), "blurred"
        rows.to_csv(csv, index=False)
        task = "blood"
    else:
        whole = request.param == "ana-cytoplasmic"
        bundle, csv, task = _cropped_bundle(root, "ana-hep2-cyto" if whole else "ana-hep2", 256, whole)
    return {"root": root, "bundle": bundle, "quality": quality, "csv": csv, "task": task}


def _service_cells(case: dict) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    from lablens.service.app import ServiceSettings

    root = case["root"]
    settings = ServiceSettings(
        str(case["bundle"]),
        f"sqlite:///{root / 'svc.db'}",
        str(root / "img"),
        quality=str(case["quality"]) if case["quality"] else None,
        min_confidence=0.0,
    )
    svc = start_service(settings)
    cells, verdicts = {}, {}
    for row in pd.read_csv(case["csv"], dtype={"sample": str}).itertuples():
        path = Path(row.path)
        files = [("files", (path.name, path.read_bytes(), "image/png"))]
        data = {"name": row.sample, "kind": "fields", "task": case["task"], "um_per_px": row.um_per_px}
        r = svc["client"].post("/api/samples", data=data, files=files, headers=svc["auth"]["technician"])
        if r.status_code == 422 and "no cells were found" in r.text:
            cells[row.sample], verdicts[row.sample] = [], None
            continue
        assert r.status_code == 201, r.text
        doc = r.json()
        cells[row.sample], verdicts[row.sample] = doc["cells"], doc["ood"]
    return cells, verdicts


@pytest.mark.slow
def test_analyze_ray_and_the_service_give_the_same_cells(case: dict, tmp_path: Path) -> None:
    require_ray()

    kw = {"task": case["task"], "min_cells": 1, "min_confidence": 0.0, "progress": False}
    kw["quality"] = case["quality"]
    local = analyze(case["bundle"], [case["csv"]], tmp_path / "local", **kw)
    ray = analyze(
        case["bundle"], [case["csv"]], tmp_path / "ray", engine="ray", ray={"num_cpus": 2}, **kw
    )
    pd.testing.assert_frame_equal(ray.cells, local.cells)
    assert ray.samples == local.samples
    classified = local.cells[local.cells["crop_sha256"] != ""]
    assert len(classified) >= 3
    if case["task"] == "ana":
        detector = json.loads((tmp_path / "local" / "analyze.json").read_text())["detector"]
        assert detector == ("cells" if "cytoplasmic" in str(case["root"]) else "nuclei")
    if case["quality"] is not None:
        assert (classified[classified["sample"] == "blurred"]["status"] == "not_evaluable").all()
        assert (classified[classified["sample"] != "blurred"]["status"] != "not_evaluable").any()

    service, verdicts = _service_cells(case)
    for sample, got in service.items():  # a field with nothing to classify is refused by the service
        assert bool(got) == (sample in set(classified["sample"].astype(str))), sample
    classes = json.loads((tmp_path / "local" / "analyze.json").read_text())["classes"]
    for sample, df in classified.groupby("sample"):
        got = service[str(sample)]
        assert len(got) == len(df), sample
        for want, cell in zip(df.to_dict("records"), got, strict=True):
            assert cell["source"]["box"] == [want["x0"], want["y0"], want["x1"], want["y1"]]
            assert cell["image"].endswith("/image")
            stored = case["root"] / "img" / want["crop_sha256"][:2] / f"{want['crop_sha256']}.png"
            assert stored.is_file()  # the service stored this very crop under the same digest
            assert cell["gate"] == want["status"]
            p = np.array([want[f"p_{c}"] for c in classes], dtype=float)
            if want["status"] == "classified":
                assert cell["predicted"] == classes[int(np.nanargmax(p))]
                assert abs(cell["confidence"] - np.nanmax(p)) < 1e-3
            assert abs(cell["ood_score"] - want["ood_score"]) < 1e-3
            if case["quality"] is not None:
                assert abs(cell["quality_score"] - want["quality_score"]) < 1e-3
            assert ";".join(cell["flags"]) == (want["flags"] if isinstance(want["flags"], str) else "")
        assert (
            verdicts[str(sample)]["flagged"] == local.samples[str(sample)]["out_of_distribution"]["flagged"]
        )
