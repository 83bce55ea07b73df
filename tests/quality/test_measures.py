"""Quality measures: known values on constructed images, and the expected direction under blur and exposure."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lablens.quality.measures import list_measures, measure_batch, measure_image


def _checker(size: int = 64, cell: int = 4) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    g = (((yy // cell) + (xx // cell)) % 2 * 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def test_flat_image_has_no_sharpness_and_no_noise() -> None:
    m = measure_image(np.full((32, 32, 3), 100, np.uint8))
    assert m["laplacian_var"] == 0 and m["tenengrad"] == 0 and m["brenner"] == 0
    assert m["noise"] == pytest.approx(0.0, abs=1e-6)
    assert m["saturated"] == 0 and m["underexposed"] == 0


def test_brenner_matches_its_definition_on_a_stripe_pattern() -> None:
    g = np.zeros((16, 16), np.uint8)
    g[:, ::4] = 255  # columns 0, 4, 8, 12 white: every horizontal difference two apart is ±1 or 0
    img = np.repeat(g[..., None], 3, axis=2)
    dx = (g[:, 2:].astype(float) - g[:, :-2]) / 255
    expected = (np.mean(dx**2) + 0.0) / 2  # no vertical change
    assert measure_image(img, ["brenner"])["brenner"] == pytest.approx(expected)


def test_sharpness_drops_and_spectrum_steepens_under_blur() -> None:
    sharp = _checker()
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    a, b = measure_image(sharp), measure_image(blurred)
    for name in ("laplacian_var", "tenengrad", "brenner"):
        assert b[name] < a[name] / 4, name
    assert b["spectrum_slope"] < a["spectrum_slope"]


def test_exposure_fractions_and_noise_estimate() -> None:
    img = np.full((40, 40, 3), 128, np.uint8)
    img[:10] = 255  # a quarter clipped
    img[10:20] = 0  # a quarter black
    m = measure_image(img, ["saturated", "underexposed"])
    assert m == {"saturated": 0.25, "underexposed": 0.25}
    rng = np.random.default_rng(0)
    noisy = np.clip(128 + rng.normal(0, 0.05 * 255, (128, 128, 3)), 0, 255).astype(np.uint8)
    grey_sd = 0.05 * np.sqrt(0.299**2 + 0.587**2 + 0.114**2)  # luminance mixes three independent noises
    assert measure_image(noisy, ["noise"])["noise"] == pytest.approx(grey_sd, rel=0.15)


def test_batch_and_unknown_names() -> None:
    imgs = np.stack([_checker(), _checker(cell=8)])
    arr = measure_batch(imgs)
    assert arr.shape == (2, len(list_measures()))
    assert arr[0, 0] == measure_image(imgs[0])["laplacian_var"]
    with pytest.raises(ValueError, match="unknown quality measure"):
        measure_image(imgs[0], ["focus"])
