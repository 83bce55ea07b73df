"""``lablens blur-study`` end to end on tiny shapes: every arm at every level, the report and the bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lablens.cli import app
from lablens.infer.bundle import load_bundle
from lablens.workflows.blur_study import ARMS

from conftest import write_shape_folder

runner = CliRunner()


@pytest.mark.slow
def test_blur_study_scores_four_arms_at_every_level(tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "shapes", per_class=15, size=40)
    out = tmp_path / "study"
    args = ["blur-study", str(data), "-o", str(out), "--image-size", "40", "--epochs", "1", "--levels", "0-2"]
    result = runner.invoke(app, [*args, "--threads", "2", "-q"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "blur_study.json").read_text())
    assert doc["schema"] == "lablens.blur_study/1" and doc["levels"] == [0, 1, 2]
    assert {(r["arm"], r["level"]) for r in doc["rows"]} == {(a, lv) for a in ARMS for lv in (0, 1, 2)}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in doc["rows"])
    assert doc["deblur"]["0"]["psnr_blurred"] == 100.0  # level 0 is the clean image itself
    assert doc["deblur"]["2"]["psnr_blurred"] < doc["deblur"]["1"]["psnr_blurred"]
    assert set(doc["gate"]["2"]) == {
        "head_mean_level",
        "head_flagged",
        "blur_level_model_mean",
        "blur_level_model_flagged",
    }
    assert doc["checks"]["heavy_levels"] == [1, 2]
    for name in ("blur_study.csv", "accuracy_vs_blur.png", "report.html", "config.yaml"):
        assert (out / name).is_file(), name
    assert "Accuracy under blur" in (out / "report.html").read_text()
    bundle = load_bundle(out / "multitask" / "bundle")
    assert bundle.card["model"]["heads"] == ["classification", "quality", "deblur"]
    again = runner.invoke(app, [*args, "-q"])
    assert again.exit_code == 1 and "not empty" in again.output


def test_blur_study_needs_clean_level(tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "shapes", per_class=3, size=32)
    result = runner.invoke(app, ["blur-study", str(data), "-o", str(tmp_path / "s"), "--levels", "1-3", "-q"])
    assert result.exit_code == 1 and "must include 0" in " ".join(result.output.split())
