"""The degradation protocol: exact replay from the record, graded levels, and the identity at level 0."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lablens.quality.degrade import (
    Degradation,
    apply_degradation,
    degradation_kernel,
    parse_kinds,
    parse_levels,
    sample_degradation,
)
from lablens.quality.measures import laplacian_var
from lablens.quality.psf import kernel_sd

from conftest import shape_image


def _image() -> np.ndarray:
    return shape_image("disc", np.random.default_rng(0), 96)


def test_level_zero_is_the_untouched_image() -> None:
    img = _image()
    d = sample_degradation(0, ("defocus",), np.random.default_rng(0), noise=0.05)
    assert d == Degradation(level=0)
    out = apply_degradation(img, d)
    assert np.array_equal(out, img) and out is not img


def test_same_record_same_pixels_and_sampling_replays() -> None:
    a = sample_degradation(3, ("defocus", "gaussian", "motion"), np.random.default_rng(7))
    b = sample_degradation(3, ("defocus", "gaussian", "motion"), np.random.default_rng(7))
    assert a == b
    img = _image()
    assert np.array_equal(apply_degradation(img, a), apply_degradation(img, b))


@pytest.mark.parametrize("kind", ["defocus", "gaussian", "motion"])
def test_sharpness_falls_with_every_level(kind: str) -> None:
    img = _image()
    # a fresh generator per level: the same motion angle at every level
    degs = [sample_degradation(lv, (kind,), np.random.default_rng(0), noise=0.0) for lv in range(5)]
    values = [laplacian_var(apply_degradation(img, d)) for d in degs]
    assert all(b < a for a, b in itertools.pairwise(values)), values


def test_psf_scales_with_the_image_side() -> None:
    d = Degradation(level=2, kind="gaussian", sd_frac=2 / 96)
    assert kernel_sd(degradation_kernel(d, 96))[0] == pytest.approx(2.0, abs=0.1)
    assert kernel_sd(degradation_kernel(d, 192))[0] == pytest.approx(4.0, abs=0.1)
    rec = d.record(192)
    assert rec["blur_level"] == 2 and rec["blur_kind"] == "gaussian" and rec["blur_sd_px"] == 4.0


def test_noise_is_added_with_the_recorded_sd() -> None:
    flat = np.full((128, 128, 3), 128, np.uint8)
    d = Degradation(level=1, kind="gaussian", sd_frac=1 / 96, noise_sigma=0.02, noise_seed=3)
    out = apply_degradation(flat, d).astype(float)
    assert out.std() == pytest.approx(0.02 * 255, rel=0.1)


def test_parsers_explain_bad_input() -> None:
    assert parse_levels("0-2,4") == (0, 1, 2, 4)
    assert parse_kinds("motion, defocus") == ("motion", "defocus")
    with pytest.raises(ValueError, match=r"0\.\.8"):
        parse_levels("0-12")
    with pytest.raises(ValueError, match="must look like"):
        parse_levels("a-b")
    with pytest.raises(ValueError, match="blur kinds"):
        parse_kinds("smear")
