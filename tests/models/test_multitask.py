"""The multi-task model: heads, ablation switches, on-the-fly blur, and learning all three tasks on shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lablens.models.registry import create_estimator
from lablens.quality.degrade import apply_degradation, sample_degradation
from lablens.quality.torch_degrade import degrade_tensor
from lablens.train.context import FitContext
from lablens.train.tasks.blur import BlurSettings, fixed_records, training_records

from conftest import shape_image

CLASSES = ("disc", "ring", "square")


def _data(n: int, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.array([CLASSES[i % 3] for i in range(n)])
    return np.stack([shape_image(c, rng, size) for c in labels]), labels


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def test_torch_degradation_matches_the_file_protocol() -> None:
    img = shape_image("ring", np.random.default_rng(1), 64)
    rng = np.random.default_rng(0)
    for level in range(5):
        d = sample_degradation(level, ("defocus", "gaussian", "motion"), rng, noise=0.0)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
        t = degrade_tensor(x, [d])[0].permute(1, 2, 0).numpy() * 255
        assert np.abs(apply_degradation(img, d).astype(float) - t).max() <= 0.51  # uint8 rounding only


def test_training_and_validation_records() -> None:
    s = BlurSettings(levels=(0, 1, 2, 3, 4), blur_prob=0.0)
    assert {r.level for r in training_records(50, s, np.random.default_rng(0))} == {0}
    s = BlurSettings(levels=(0, 2, 4), blur_prob=1.0)
    assert {r.level for r in training_records(200, s, np.random.default_rng(0))} == {2, 4}
    assert fixed_records(5, 3, s, seed=1) == fixed_records(5, 3, s, seed=1)


def test_switched_off_heads() -> None:
    X, y = _data(12)
    est = create_estimator(
        "multitask",
        image_size=48,
        epochs=1,
        batch_size=6,
        quality_weight=0.0,
        deblur_weight=0.0,
    )
    est.fit(X, y, context=FitContext(device="cpu"))
    assert est.network_.quality_head is None and est.network_.decoder is None
    with pytest.raises(ValueError, match="without its quality head"):
        est.predict_quality(X)
    assert np.array_equal(est.deblur(X), X)  # no decoder: the input comes back
    assert est.export_state()[1]["heads"] == ["classification"]


@pytest.mark.slow
def test_multitask_learns_class_blur_level_and_deblurring() -> None:
    X, y = _data(90)
    Xv, yv = _data(30, seed=1)
    est = create_estimator(
        "multitask", image_size=48, epochs=6, batch_size=16, seed=0, levels="0-4", tta=False
    )
    est.fit(X, y, Xv, yv, context=FitContext(device="cpu", threads=2))
    assert est.history_[-1]["val_macro_f1"] > 0.8  # averaged over the five blur levels
    s = est.blur_settings()
    heavy = fixed_records(len(Xv), 4, s, seed=5)
    out = est.outputs(Xv, records=heavy, want_deblurred=True)
    clean = est.outputs(Xv)
    assert out["level"].mean() > clean["level"].mean() + 2.0  # the quality head sees the blur
    blurred = np.stack([apply_degradation(im, r) for im, r in zip(Xv, heavy, strict=True)])
    gain = np.mean([_psnr(d, c) - _psnr(b, c) for d, b, c in zip(out["deblurred"], blurred, Xv, strict=True)])
    assert gain > 0.5  # de-blurring restores detail (dB)
