"""Quality end to end: degrade → train a blur-level model → ``lablens quality`` → gated ``lablens predict``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lablens.cli import app
from lablens.config import RunConfig
from lablens.infer.bundle import BundleError
from lablens.infer.gate import QualityGate, expected_level
from lablens.workflows.degrade import degrade
from lablens.workflows.quality import quality
from lablens.workflows.train import train

from conftest import write_shape_folder

runner = CliRunner()


def _cfg(model: str, size: int = 48, label_column: str = "label") -> RunConfig:
    cfg = RunConfig()
    cfg.model.name, cfg.model.image_size = model, size
    cfg.data.label_column = label_column
    cfg.train.threads = 1
    cfg.eval.bootstrap = 0
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("quality")
    shapes = write_shape_folder(root / "shapes", per_class=12, size=48)
    deg = root / "deg"
    degrade(shapes, deg, levels="0-4", kinds="defocus,gaussian", progress=False)
    qrun = train(deg, root / "qrun", _cfg("blur_level", label_column="blur_level"), progress=False)
    # a classifier of the shapes themselves (a features pipeline: `lablens train` takes any registered family)
    crun = train(shapes, root / "crun", _cfg("handcrafted"), progress=False)
    return {
        "shapes": shapes,
        "deg": deg,
        "quality": qrun.bundles[0],
        "classifier": crun.bundles[0],
        "root": root,
    }


def test_quality_model_flags_heavy_blur_and_passes_clean_images(trained: dict[str, Path]) -> None:
    res = quality([trained["deg"]], model=trained["quality"], max_level=2.5, size=48, progress=False)
    t = res.table
    assert len(t) == 36 * 5 and set(t["blur_level"]) == {0, 1, 2, 3, 4}
    flagged = 1 - t.groupby("blur_level")["evaluable"].mean()
    assert flagged[0] <= 0.1 and flagged[4] >= 0.8  # trained on most of these, so near perfect
    med = t.groupby("blur_level")["laplacian_var"].median()
    assert (np.diff(med.to_numpy()) < 0).all()  # sharpness falls with every level
    summary = res.summary()
    assert list(summary.index) == ["all", "level 0", "level 1", "level 2", "level 3", "level 4"]
    assert summary.loc["all", "images"] == 180


def test_gated_predict_reports_blurred_images_as_not_evaluable(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    deg = trained["deg"]
    inputs = sorted((deg / "disc").glob("*__L0.png"))[:4] + sorted((deg / "disc").glob("*__L4.png"))[:4]
    out = tmp_path / "pred.csv"
    args = ["predict", str(trained["classifier"]), *map(str, inputs), "-o", str(out)]
    result = runner.invoke(app, [*args, "--quality", str(trained["quality"]), "--max-level", "2.5"])
    assert result.exit_code == 0, result.output
    assert "not evaluable" in " ".join(result.output.split())
    rows = list(csv.DictReader(out.open()))
    assert [r["status"] for r in rows] == ["classified"] * 4 + ["not_evaluable"] * 4
    assert all(r["class_1"] for r in rows[:4]) and not any(r["class_1"] for r in rows[4:])
    assert all(float(r["quality_score"]) > 2.5 for r in rows[4:])
    js = tmp_path / "pred.json"
    result = runner.invoke(app, [*args[:-1], str(js), "--quality", str(trained["quality"])])
    doc = json.loads(js.read_text())
    assert doc["quality_gate"] == {"max_level": 2.5, "not_evaluable": 4}
    assert doc["predictions"][-1]["ranked"] == [] and doc["predictions"][0]["ranked"]


def test_an_archive_job_gates_like_the_single_file_output(trained: dict[str, Path], tmp_path: Path) -> None:
    from lablens.workflows.predict_archive import predict_archive

    deg = trained["deg"]
    listing = tmp_path / "inputs.txt"
    inputs = sorted((deg / "disc").glob("*__L0.png"))[:4] + sorted((deg / "disc").glob("*__L4.png"))[:4]
    listing.write_text("\n".join(map(str, inputs)))
    res = predict_archive(
        trained["classifier"],
        [listing],
        tmp_path / "job",
        quality=trained["quality"],
        shard_size=3,
        progress=False,
    )
    rows = pd.read_parquet(tmp_path / "job").sort_values("row")
    assert rows["status"].tolist() == ["classified"] * 4 + ["not_evaluable"] * 4
    assert rows["class_1"].iloc[4:].isna().all() and (rows["quality_score"].iloc[4:] > 2.5).all()
    assert res.summary["not_evaluable"] == 4
    single = tmp_path / "pred.csv"
    runner.invoke(
        app,
        [
            "predict",
            str(trained["classifier"]),
            *map(str, inputs),
            "-o",
            str(single),
            "--quality",
            str(trained["quality"]),
        ],
    )
    expected = pd.read_csv(single)
    assert abs(rows["quality_score"].to_numpy() - expected["quality_score"].to_numpy()).max() < 1e-4


def test_quality_cli_prints_summary_and_refuses_a_classifier_as_quality_model(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "q.csv"
    result = runner.invoke(app, ["quality", str(trained["shapes"]), "--size", "48", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "summary (medians)" in result.output and "36 images measured" in result.output
    assert out.is_file()
    again = runner.invoke(app, ["quality", str(trained["shapes"]), "-o", str(out)])
    assert again.exit_code == 1 and "exists" in again.output
    with pytest.raises(BundleError, match="not a quality model"):
        QualityGate.load(trained["classifier"])


def test_expected_level_is_the_probability_weighted_level() -> None:
    proba = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.2, 0.3, 0.5]])
    np.testing.assert_allclose(expected_level(proba, ["0", "2", "4"]), [0.0, 3.0, 2.6])


@pytest.mark.slow
def test_multitask_bundle_gates_its_own_predictions(trained: dict[str, Path], tmp_path: Path) -> None:
    cfg = _cfg("multitask")
    cfg.model.weights = "imagenet"
    cfg.train.epochs, cfg.train.batch_size = 10, 8
    run = train(trained["shapes"], tmp_path / "mt", cfg, progress=False)
    deg = trained["deg"]
    inputs = sorted(deg.glob("*/*__L0.png"))[:6] + sorted(deg.glob("*/*__L4.png"))[:6]
    out = tmp_path / "pred.json"
    result = runner.invoke(app, ["predict", str(run.bundles[0]), *map(str, inputs), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["predictions"]
    scores = np.array([r["quality_score"] for r in rows])
    assert scores[6:].mean() > scores[:6].mean() + 1.5  # the model's own quality head grades the blur
    assert {r["status"] for r in rows} <= {"classified", "not_evaluable"}


def test_model_params_reach_only_the_family_that_takes_them() -> None:
    from lablens.models.from_config import estimator_params
    from lablens.params import ParamError

    cfg = _cfg("multitask")
    cfg.model.params = {"deblur_weight": 0.0}
    params = estimator_params(cfg)
    assert params["deblur_weight"] == 0.0 and params["tta"] is True and "checkpoint_dir" not in params
    cfg.model.params = {"deblur_wieght": 0.0}
    with pytest.raises(ParamError, match=r"model\.params\.deblur_wieght"):
        estimator_params(cfg)
