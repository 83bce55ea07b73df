"""Synthetic images join the training partition only: never validation, test, calibration or a metric —
in a single split, in k-fold, and in compare; a set that would leak is refused by name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import lablens.workflows.train as train_module
from lablens.cli import app

from conftest import shape_image, write_shape_folder

runner = CliRunner()
MARK = (255, 0, 255)  # a magenta corner block: no real shape image has one


def _marked(arr: np.ndarray) -> np.ndarray:
    """Which images (N×S×S×3, the model's input cache) carry the synthetic mark."""
    return (np.asarray(arr)[:, 1:3, 1:3] == MARK).all(axis=(1, 2, 3))


def write_synthetic(root: Path, labels: dict[str, int], seed: int = 1, **extra: Any) -> Path:
    """A synthetic set as lablens synthesize writes it: images + manifest.csv with synthetic=1."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, n in labels.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = shape_image(label, rng)
            img[:10, :10] = MARK
            path = f"{label}/syn_{i:03d}.png"
            cv2.imwrite(str(root / path), img[:, :, ::-1])
            rows.append(
                {"path": path, "label": label, "synthetic": 1, "generator": "g0123", "seed": seed, **extra}
            )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """What each fit, calibration and test prediction of ``lablens train`` received."""
    seen: dict[str, list] = {"fit": [], "val": [], "calibrate": [], "test": []}
    real_create, real_calibrate, real_logits = (
        train_module.create_estimator,
        train_module.calibrate,
        train_module._logits_everywhere,
    )

    def create(*args: Any, **kwargs: Any) -> Any:
        est = real_create(*args, **kwargs)
        fit = est.fit

        def spy_fit(X: Any, y: Any, X_val: Any = None, y_val: Any = None, **kw: Any) -> Any:
            seen["fit"].append((np.asarray(X), np.asarray(y), kw.get("groups")))
            seen["val"].append(np.asarray(X_val) if X_val is not None else np.zeros((0, 1, 1, 3)))
            return fit(X, y, X_val, y_val, **kw)

        est.fit = spy_fit
        return est

    def calibrate(est: Any, X: Any, y: Any, X_val: Any, y_val: Any, **kw: Any) -> Any:
        seen["calibrate"] += [
            np.asarray(X),
            np.asarray(X_val) if X_val is not None else np.zeros((0, 1, 1, 3)),
        ]
        return real_calibrate(est, X, y, X_val, y_val, **kw)

    def logits_everywhere(*args: Any) -> Any:
        inner = real_logits(*args)

        def logits_of(model: Any, X: np.ndarray) -> np.ndarray:
            seen["test"].append(np.asarray(X))
            return inner(model, X)

        return logits_of

    monkeypatch.setattr(train_module, "create_estimator", create)
    monkeypatch.setattr(train_module, "calibrate", calibrate)
    monkeypatch.setattr(train_module, "_logits_everywhere", logits_everywhere)
    return seen


def _train(data: Path, out: Path, *extra: str) -> Any:
    return runner.invoke(
        app,
        ["train", str(data), "--out", str(out), "--model", "test_resnet", "--weights", "scratch", "--image-size",
         "32", "--epochs", "1", "--batch-size", "8", "-q", *extra],
    )  # fmt: skip


@pytest.mark.parametrize("split", ["6:2:2", "kfold:3"])
def test_synthetic_images_reach_training_only(split: str, tmp_path: Path, spied: dict[str, list]) -> None:
    data = write_shape_folder(tmp_path / "real", per_class=15)
    syn = write_synthetic(tmp_path / "syn", {"ring": 12})
    r = _train(data, tmp_path / "run", "--split", split, "--synthetic", str(syn), "--synthetic-ratio", "1.5")
    assert r.exit_code == 0, r.output
    folds = 1 if split == "6:2:2" else 3
    assert len(spied["fit"]) == folds and len(spied["test"]) >= folds  # calibration scores through it too
    for X, y, groups in spied["fit"]:
        marked = _marked(X)
        assert marked.sum() > 0 and set(y[marked]) == {"ring"}  # joined, with its label
        assert all(str(g).startswith("synthetic:") for g in np.asarray(groups)[marked])
        real_rings = int(((y == "ring") & ~marked).sum())
        assert marked.sum() == min(12, round(1.5 * real_rings))  # the ratio caps them
    for arr in spied["val"] + spied["calibrate"][1::2] + spied["test"]:
        assert not _marked(arr).any()  # validation, calibration's held-out part, test: real only
    for arr in spied["calibrate"][0::2]:
        assert not _marked(arr).any()  # calibration is fitted on real images only
    run = tmp_path / "run" if folds == 1 else tmp_path / "run" / "folds" / "fold1"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["synthetic"]["used"] == {"ring": int(_marked(spied["fit"][0][0]).sum())}
    predicted = pd.read_csv(run / "predictions.csv")
    assert not predicted["id"].astype(str).str.contains("syn_").any()
    card = json.loads((run / "bundle" / "card.json").read_text())
    assert card["training"]["synthetic"]["generators"] == ["g0123"]


def test_compare_joins_synthetic_to_each_training_fold_only(tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "real", per_class=12)
    syn = write_synthetic(tmp_path / "syn", {"disc": 6})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  synthetic: {syn}\n")
    r = runner.invoke(
        app,
        ["compare", str(data), "-m", "hu+morphology:logreg", "--folds", "3", "--image-size", "40",
         "--config", str(cfg), "-o", str(tmp_path / "cmp"), "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert doc["n_images"] == 36 and doc["synthetic"]["used"] == {f"fold{i}": {"disc": 6} for i in (1, 2, 3)}
    for pred in (tmp_path / "cmp" / "predictions").glob("*.csv"):
        paths = pd.read_csv(pred)["id"].astype(str)
        assert len(paths) == 36 and not paths.str.contains("syn_").any()


def test_a_generator_that_saw_a_test_image_is_refused(tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "real", per_class=15)
    syn = write_synthetic(tmp_path / "syn", {"ring": 4})
    every = sorted(data.rglob("*.png"))
    shas = [hashlib.sha256(p.read_bytes()).hexdigest() for p in every]
    pd.DataFrame({"sha256": shas}).to_csv(syn / "sources.csv", index=False)  # learned from all real images
    r = _train(data, tmp_path / "run", "--split", "6:2:2", "--synthetic", str(syn))
    assert r.exit_code != 0 and "learned from" in r.output and "Traceback" not in r.output


def test_an_exact_copy_of_a_real_image_is_refused(tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "real", per_class=15)
    syn = write_synthetic(tmp_path / "syn", {"ring": 2})
    for p in sorted((data / "ring").glob("*.png")):  # every real ring copied in: some are held out
        (syn / "ring" / p.name).write_bytes(p.read_bytes())
    table = pd.read_csv(syn / "manifest.csv")
    extra = [
        {**table.iloc[0].to_dict(), "path": f"ring/{p.name}"} for p in sorted((data / "ring").glob("*.png"))
    ]
    pd.concat([table, pd.DataFrame(extra)]).to_csv(syn / "manifest.csv", index=False)
    r = _train(data, tmp_path / "run", "--split", "6:2:2", "--synthetic", str(syn))
    assert r.exit_code != 0 and "exact copies" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.assign(label="blast"), "class 'blast' is not a class of the data"),
        (lambda t: t.assign(synthetic=0), "synthetic is '0', not 1"),
        (lambda t: t.drop(columns="synthetic"), "needs the columns synthetic"),
    ],
)
def test_bad_synthetic_sets_are_one_line(change: Any, message: str, tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "real", per_class=6)
    syn = write_synthetic(tmp_path / "syn", {"ring": 2})
    change(pd.read_csv(syn / "manifest.csv")).to_csv(syn / "manifest.csv", index=False)
    r = _train(data, tmp_path / "run", "--synthetic", str(syn))
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) <= 2 and not (tmp_path / "run").exists()
