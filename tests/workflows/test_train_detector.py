"""``lablens train-detector`` on annotated fields → a detector bundle → ``lablens analyze --detector``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lablens.cli import app

from conftest import CYTO_SIZE, cyto_phantom_fields, tiny_bundle

runner = CliRunner()


@pytest.fixture(scope="module")
def annotated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Phantom IIF fields listed in a fields CSV, their cells in a box CSV without labels, one field unannotated."""
    root = tmp_path_factory.mktemp("annotated")
    cyto_phantom_fields(root / "f", n=9, seed=7)
    man = pd.read_csv(root / "f" / "manifest.csv", dtype=str)
    pd.DataFrame(
        {
            "path": "f/" + man["path"],
            "sample": man["group"],
            "um_per_px": man["field_um"].astype(float) / CYTO_SIZE,
        }
    ).to_csv(root / "fields.csv", index=False)
    cells = pd.read_csv(root / "f" / "cells.csv", dtype={"path": str})
    cells = cells[cells["path"] != man["path"].iloc[0]]  # the first field has no boxes
    cells.assign(path="f/" + cells["path"])[["path", "x0", "y0", "x1", "y1"]].to_csv(
        root / "boxes.csv", index=False
    )
    return root


def test_train_detector_writes_a_bundle_and_its_figures(annotated: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "train-detector", str(annotated / "fields.csv"), "--annotations", str(annotated / "boxes.csv"),
        "--out", str(out), "--model", "test_efficientnet", "--weights", "scratch", "--epochs", "1", "-q",
    ]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    card = json.loads((out / "detector" / "card.json").read_text())
    assert card["detector"]["params"]["model_name"] == "test_efficientnet"
    metrics = json.loads((out / "metrics.json").read_text())
    used = metrics["training"]["fields"] + metrics["training"]["validation_fields"]
    assert used == 8 and metrics["bundle_hash"]
    if metrics["training"]["validation_fields"]:  # held out by sample, scored at IoU >= 0.5
        assert 0.0 <= metrics["validation"]["recall"] <= 1.0 and metrics["validation"]["objects"] > 0
    assert "no boxes for it" in (out / "skipped.csv").read_text()
    again = runner.invoke(app, args)  # nothing is overwritten
    assert again.exit_code != 0 and "not empty" in again.output and "Traceback" not in again.output


def test_missing_annotations_are_one_line(annotated: Path, tmp_path: Path) -> None:
    r = runner.invoke(
        app,
        ["train-detector", str(annotated / "fields.csv"), "--annotations", str(tmp_path / "no.csv"),
         "--out", str(tmp_path / "run"), "-q"],
    )  # fmt: skip
    assert r.exit_code != 0 and "no such file" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "run").exists()


def test_analyze_finds_the_cells_with_the_learned_detector(
    annotated: Path, learned_cells: Path, tmp_path: Path
) -> None:
    bundle, _ = tiny_bundle(tmp_path / "b")
    out = tmp_path / "analysis"
    r = runner.invoke(
        app,
        ["analyze", str(bundle), str(annotated / "fields.csv"), "--out", str(out), "--task", "ana",
         "--samples", "per-field", "--detector", str(learned_cells), "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "analyze.json").read_text())
    assert doc["detector"] == "learned" and doc["detector_kwargs"] == {"bundle": str(learned_cells)}
    assert any("learned detector" in n for n in doc["notes"])
    cells = pd.read_csv(out / "cells.csv")
    assert len(cells) > 9 * 10  # phantom fields hold 20-40 cells each (a third are negative and dim)
    wrong = runner.invoke(
        app,
        ["analyze", str(bundle), str(annotated / "fields.csv"), "--out", str(tmp_path / "x"), "--task", "ana",
         "--detector", str(bundle), "-q"],
    )  # fmt: skip
    assert wrong.exit_code != 0 and "--detector" in wrong.output and "Traceback" not in wrong.output
