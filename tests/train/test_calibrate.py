"""Temperatures are fitted on images the model they calibrate never trained on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from lablens.config import RunConfig
from lablens.infer.bundle import load_bundle
from lablens.models.classical import FeatureClassifier
from lablens.models.registry import create_estimator
from lablens.train import calibrate as calibrate_module
from lablens.train.calibrate import calibrate
from lablens.train.context import FitContext
from lablens.workflows.train import train

from conftest import shape_image, write_shape_folder


def _hashes(X: np.ndarray) -> list[str]:
    return [hashlib.sha256(np.ascontiguousarray(im).tobytes()).hexdigest() for im in X]


def _data(n_groups: int = 4, per_group: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for c in ("disc", "ring", "square"):
        for g in range(n_groups):
            labels += [c] * per_group
            groups += [f"{c}-{seed}-{g}"] * per_group
    X = np.stack([shape_image(c, rng, 40) for c in labels])
    return X, np.array(labels), np.array(groups)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Record which images each model instance trained on, which it scored, and what fitted a temperature."""
    log: dict = {"trained": {}, "scored": [], "fitted": [], "alive": []}
    fit, logits = FeatureClassifier.fit, FeatureClassifier.predict_logits

    def recording_fit(self, X, y, X_val=None, y_val=None, **kw):  # type: ignore[no-untyped-def]
        seen = _hashes(X) + (_hashes(X_val) if X_val is not None else [])
        log["trained"][id(self)] = set(seen)
        log["alive"].append(self)  # keep every model alive so that no id() is reused
        return fit(self, X, y, X_val, y_val, **kw)

    def recording_logits(self, X, **kw):  # type: ignore[no-untyped-def]
        out = logits(self, X, **kw)
        log["scored"].append((id(self), _hashes(X), out))
        return out

    def recording_temperature(z, y):  # type: ignore[no-untyped-def]
        log["fitted"].append(np.asarray(z).copy())
        return 1.5

    monkeypatch.setattr(FeatureClassifier, "fit", recording_fit)
    monkeypatch.setattr(FeatureClassifier, "predict_logits", recording_logits)
    monkeypatch.setattr(calibrate_module, "fit_temperature", recording_temperature)
    return log


def test_a_model_that_trains_on_its_validation_images_is_calibrated_on_cross_fitted_scores(spy: dict) -> None:
    X, y, g = _data()
    Xv, yv, gv = _data(n_groups=2, seed=1)
    est = create_estimator("features", features="hu+colour", classifier="logreg", image_size=40)
    est.fit(X, y, Xv, yv, groups=g, groups_val=gv)
    cal = calibrate(est, X, y, Xv, yv, groups=g, groups_val=gv, context=FitContext())
    assert cal.method == "cross-fitted" and cal.temperature == 1.5 and cal.n_images == len(y) + len(yv)
    (fitted,) = spy["fitted"]
    used = [(model, h, z) for model, hs, zs in spy["scored"] for h, z in zip(hs, zs, strict=True)]
    rows = {tuple(np.round(z, 10)) for z in fitted}
    assert len(used) == len(fitted)  # every row of the temperature fit came from one of these scores …
    for model, image, z in used:
        assert tuple(np.round(z, 10)) in rows
        assert image not in spy["trained"][model]  # … made by a model that never trained on that image
    assert id(est) not in {model for model, _, _ in used}  # the final model's own scores are never used


def test_a_model_that_keeps_validation_apart_is_calibrated_on_it() -> None:
    X, y, _ = _data()
    Xv, yv, _ = _data(n_groups=1, seed=1)
    est = create_estimator("test_resnet", image_size=40, epochs=1, batch_size=6, augment=None)
    est.fit(X, y, Xv, yv, context=FitContext(device="cpu"))
    cal = calibrate(est, X, y, Xv, yv)
    assert cal.method == "validation" and cal.n_images == len(yv) and cal.temperature > 0


def test_too_few_groups_to_cross_fit_leaves_the_model_uncalibrated_and_says_why() -> None:
    X, y, g = _data(n_groups=1)
    est = create_estimator("features", features="hu", classifier="logreg", image_size=40).fit(X, y, groups=g)
    cal = calibrate(est, X, y, None, None, groups=g)
    assert (cal.temperature, cal.method) == (1.0, "none") and "fewer than 2 groups" in cal.note


@pytest.mark.slow
def test_a_classical_bundle_records_where_its_temperature_comes_from(tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "shapes", per_class=12, size=40)
    cfg = RunConfig()
    cfg.model.name, cfg.model.image_size = "features", 40
    cfg.model.params = {"features": "hu+colour", "classifier": "logreg"}
    cfg.eval.bootstrap = 0
    run = train(data, tmp_path / "run", cfg, progress=False)
    calibration = load_bundle(run.bundles[0]).card["calibration"]
    assert calibration["fitted_on"] == "cross-fitted" and calibration["n_images"] == 33
    assert calibration["temperature"] > 0
