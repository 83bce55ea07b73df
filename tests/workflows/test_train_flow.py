"""End to end on tiny shape images: train → run folder → evaluate → predict (API level)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from lablens.config import RunConfig
from lablens.errors import RunError
from lablens.workflows.evaluate import evaluate
from lablens.workflows.predict import predict
from lablens.workflows.train import train

from conftest import write_shape_folder

pytestmark = pytest.mark.slow


def tiny_config(epochs: int = 6, protocol: str = "8:1:1") -> RunConfig:
    cfg = RunConfig()
    cfg.model.name = "test_efficientnet"
    cfg.model.image_size = 32
    cfg.train.epochs = epochs
    cfg.train.batch_size = 8
    cfg.train.device = "cpu"
    cfg.split.protocol = protocol
    cfg.eval.bootstrap = 100
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("flow")
    data = write_shape_folder(root / "data", per_class=20)
    train(data, root / "run", tiny_config(), progress=False)
    return data, root / "run"


def test_run_folder_contents(trained: tuple[Path, Path]) -> None:
    _, run = trained
    for name in (
        "config.yaml",
        "data_report.json",
        "manifest.csv",
        "split.json",
        "metrics.json",
        "predictions.csv",
        "report.html",
        "bundle/card.json",
        "bundle/weights.safetensors",
        "checkpoints/last.safetensors",
    ):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["schema"] == "lablens.metrics/1"
    assert metrics["classes"] == ["disc", "ring", "square"]
    split = json.loads((run / "split.json").read_text())
    fold = split["folds"][0]
    assert not set(fold["test"]) & set(fold["train"])
    assert metrics["n"] == len(fold["test"])
    card = json.loads((run / "bundle/card.json").read_text())
    assert card["training"]["split"]["n_test"] == len(fold["test"])
    assert card["training"]["manifest_hash"]
    assert card["calibration"]["temperature"] > 0
    assert card["metrics"]["test"]["accuracy"]["ci"] is not None
    timing = json.loads((run / "timing.json").read_text())
    phases = ["read data", "decode", "train", "calibration", "test", "ood summary", "report and bundle"]
    assert list(timing) == [*phases, "other", "total"]
    assert timing["train"] > 0
    assert sum(timing[p] for p in [*phases, "other"]) == pytest.approx(timing["total"], abs=0.1 * len(timing))


def test_shapes_are_learned(trained: tuple[Path, Path]) -> None:
    _, run = trained
    rows = list(csv.DictReader((run / "predictions.csv").open()))
    assert sum(r["correct"] == "True" for r in rows) / len(rows) >= 0.5  # chance is 1/3


def test_refuses_existing_run_folder(trained: tuple[Path, Path]) -> None:
    data, run = trained
    with pytest.raises(RunError, match="not empty"):
        train(data, run, tiny_config(), progress=False)


def test_resume_of_complete_run_is_refused(trained: tuple[Path, Path]) -> None:
    data, run = trained
    with pytest.raises(RunError, match="already complete"):
        train(data, run, tiny_config(), resume=True, progress=False)


def test_evaluate_excludes_seen_images(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = trained
    m = evaluate(run / "bundle", data, tmp_path / "eval", progress=False)
    n_test = json.loads((run / "metrics.json").read_text())["n"]
    assert m["n"] == n_test
    report = json.loads((tmp_path / "eval" / "data_report.json").read_text())
    assert report["counts_by_kind"]["seen_in_training"] == 60 - n_test
    everything = evaluate(run / "bundle", data, tmp_path / "eval-all", include_seen=True, progress=False)
    assert everything["n"] == 60
    assert (tmp_path / "eval-all" / "report.html").exists()


def test_predict_csv_and_json(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = trained
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    res = predict(run / "bundle", [data / "disc", bad], tmp_path / "p.csv", top_k=2, progress=False)
    assert len(res.paths) == 20 and len(res.skipped) == 1
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert len(rows) == 20
    head = ["path", "status", "ood_score", "class_1", "prob_1", "class_2", "prob_2", "bundle_hash"]
    assert list(rows[0]) == head  # the bundle's out-of-distribution guard adds status and ood_score
    for r in rows:
        if r["status"] != "classified":
            assert r["status"] == "out_of_distribution" and r["class_1"] == ""
            continue
        assert float(r["prob_1"]) >= float(r["prob_2"])
        assert r["bundle_hash"] == res.bundle_hash
    skipped = list(csv.DictReader((tmp_path / "p.skipped.csv").open()))
    assert skipped[0]["kind"] == "not_image"
    predict(run / "bundle", [data / "ring"], tmp_path / "p.json", top_k=3, progress=False)
    doc = json.loads((tmp_path / "p.json").read_text())
    assert len(doc["predictions"]) == 20
    probs = [x["probability"] for x in doc["predictions"][0]["ranked"]]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-3
    with pytest.raises(RunError, match="exists"):
        predict(run / "bundle", [data / "ring"], tmp_path / "p.json", progress=False)


def test_predict_matches_evaluation_preprocessing(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """The same image gives the same probabilities through predict (files) and through the run's cache."""
    data, run = trained
    table = list(csv.DictReader((run / "predictions.csv").open()))
    first = table[0]
    res = predict(run / "bundle", [data / first["id"]], tmp_path / "one.csv", top_k=3, progress=False)
    classes = res.classes
    expected = np.array([float(first[f"p_{c}"]) for c in classes])
    np.testing.assert_allclose(res.proba[0], expected, atol=2e-6)


def test_kfold_training(tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "data", per_class=9)
    result = train(data, tmp_path / "cv", tiny_config(epochs=1, protocol="kfold:3"), progress=False)
    assert result.metrics["schema"] == "lablens.cv-metrics/1"
    assert len(result.bundles) == 3
    assert {p.name for p in (tmp_path / "cv" / "folds").iterdir()} == {"fold1", "fold2", "fold3"}
    acc = result.metrics["summary"]["accuracy"]
    assert len(acc["values"]) == 3 and acc["sd"] is not None


def test_failed_start_leaves_no_run_folder(tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "data", per_class=20)
    cfg = tiny_config()
    cfg.model.weights = str(tmp_path / "missing.safetensors")
    with pytest.raises(Exception, match="no such file"):
        train(data, tmp_path / "run", cfg, progress=False)
    assert not (tmp_path / "run").exists()
