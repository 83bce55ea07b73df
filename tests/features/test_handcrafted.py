"""Handcrafted descriptors: exact values where theory gives them, invariances, and the cell mask."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lablens.features.cell_view import CellView, make_view
from lablens.features.feature_set import FeatureSet
from lablens.features.registry import create_extractor

HANDCRAFTED = ("hu", "zernike", "haralick", "lbp", "colour", "morphology")


def _stained_cell(size: int = 64, radius: int = 18, lobes: int = 1, seed: int = 0) -> np.ndarray:
    """A pale background with a purple cell and ``lobes`` dark nuclear lobes, like a Giemsa-stained WBC."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), (235, 225, 230), np.uint8)
    c = size // 2
    cv2.circle(img, (c, c), radius, (200, 160, 215), -1)
    offsets = [(0, 0)] if lobes == 1 else [(-9, 0), (9, 0)] if lobes == 2 else [(-10, -5), (10, -5), (0, 9)]
    for dx, dy in offsets:
        cv2.circle(img, (c + dx, c + dy), 5, (90, 40, 120), -1)
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def test_mask_is_the_centred_cell() -> None:
    view = make_view(_stained_cell(radius=18))
    assert not view.fluorescent
    assert view.mask.sum() == pytest.approx(np.pi * 18**2, rel=0.1)
    assert view.mask[32, 32] and not view.mask[2, 2]


def test_fluorescent_crop_is_recognised_and_masked() -> None:
    img = np.zeros((64, 64, 3), np.uint8)
    cv2.circle(img, (32, 32), 15, (20, 200, 40), -1)
    view = make_view(img)
    assert view.fluorescent
    assert view.mask.sum() == pytest.approx(np.pi * 15**2, rel=0.1)


def test_uniform_crop_gives_finite_features() -> None:
    flat = np.full((1, 48, 48, 3), 128, np.uint8)
    assert np.isfinite(FeatureSet("+".join(HANDCRAFTED), cache=False).transform(flat)).all()


def test_first_hu_moment_of_a_disc_is_one_over_two_pi() -> None:
    img = np.full((96, 96, 3), 240, np.uint8)
    cv2.circle(img, (48, 48), 30, (150, 60, 160), -1)
    hu_mask_1 = create_extractor("hu").transform(img[None])[0, 0]
    assert 10 ** (-hu_mask_1) == pytest.approx(1 / (2 * np.pi), rel=0.01)


def test_descriptors_are_invariant_to_quarter_turns() -> None:
    img = _stained_cell(lobes=3, seed=1)
    turned = np.ascontiguousarray(np.rot90(img))
    for name in HANDCRAFTED:
        e = create_extractor(name)
        a, b = e.transform(np.stack([img, turned]))
        np.testing.assert_allclose(a, b, rtol=0.02, atol=0.02, err_msg=name)


def test_widths_match_names_and_lobes_are_counted() -> None:
    for name in HANDCRAFTED:
        e = create_extractor(name)
        assert e.transform(_stained_cell()[None]).shape == (1, len(e.feature_names())), name
    morph = create_extractor("morphology")
    names = morph.feature_names()
    pieces = [morph.transform(_stained_cell(lobes=k)[None])[0, names.index("core_pieces")] for k in (1, 2, 3)]
    assert pieces == [1, 2, 3]


def test_lbp_histograms_are_distributions_and_options_change_width() -> None:
    e = create_extractor("lbp[points=8, radii=1]")
    h = e.transform(_stained_cell()[None])[0]
    assert h.shape == (10,) and h.sum() == pytest.approx(1.0) and (h >= 0).all()
    assert len(create_extractor("haralick[distances=1, levels=16]").feature_names()) == 14


def _colour_reference(view: CellView) -> np.ndarray:
    """The per-channel scipy.stats definition of the colour statistics."""
    from scipy import stats

    hue = view.hsv[:, :, 0].astype(np.float64) * (2 * np.pi / 180.0)
    chans = [*(view.rgb[:, :, i] / 255.0 for i in range(3)), np.cos(hue), np.sin(hue)]
    chans += [view.hsv[:, :, 1] / 255.0, view.hsv[:, :, 2] / 255.0]
    out: list[float] = []
    for ch in chans:
        v = ch[view.mask]
        flat = v.std() < 1e-9
        skew, kurt = (0.0, 0.0) if flat else (stats.skew(v), stats.kurtosis(v))
        out += [v.mean(), v.std(), skew, kurt, *np.percentile(v, [10, 50, 90])]
    return np.asarray(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_colour_statistics_equal_scipy_per_channel(seed: int) -> None:
    img = _stained_cell(lobes=1 + seed, seed=seed)
    img[:8, :8] = (20, 20, 20)  # a dark corner: skewed background, untouched mask
    view = make_view(img)
    got = create_extractor("colour").transform(img[None])[0]
    np.testing.assert_allclose(got[:49], _colour_reference(view), rtol=1e-6, atol=1e-7)  # float32 out
    flat = create_extractor("colour").transform(np.full((1, 32, 32, 3), 90, np.uint8))[0]
    assert np.all(flat[2:49:7] == 0) and np.all(flat[3:49:7] == 0)  # no skew or kurtosis of a constant
