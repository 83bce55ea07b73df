"""Tests for the kidney-biopsy immunofluorescence phantoms (fast: few images, small sizes)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lablens.phantoms import BLUR_STEP, PHANTOMS, write_phantoms
from lablens.phantoms import kidney_if as k
from lablens.phantoms.draw import Frame

TASK = PHANTOMS.value("kidney-if")
TRUTH_KEYS = {
    "subtype",
    "blur_sigma",
    "field_um",
    "glomerulus_diameter_um",
    "n_lobules",
    "n_loops",
    "n_tubules",
    "deposit_count",
    "mesangial_deposits",
    "capillary_deposits",
    "tbm_deposits",
    "extraglomerular_deposits",
    "linear_gbm",
    "intensity",
}


def _params(label: str, i: int = 0) -> dict:
    style = k.sample_style(np.random.default_rng([11, i]))
    return k.sample_params(label, np.random.default_rng([12, i]), style)


def _sharp(params: dict) -> dict:
    """The same image without defocus and sensor noise (pattern checks on clean pixels)."""
    return {**params, "blur_um": 0.0, "noise_read": 0.0, "noise_shot": 0.0}


def _on_mask(points_um: list, params: dict, mask: np.ndarray, size: int) -> float:
    """Share of µm points whose pixel falls on ``mask`` dilated by one pixel."""
    fr = Frame(size, params["field_um"])
    xy = np.rint(fr.xy(points_um)).astype(int)
    inside = (xy >= 0).all(1) & (xy < size).all(1)
    grown = cv2.dilate((mask > 0.3).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return float(grown[xy[inside, 1], xy[inside, 0]].mean())


def test_task_registered() -> None:
    assert TASK is k.TASK and TASK.name == "kidney-if"
    assert set(TASK.classes) == {"iga_mesangial", "membranous", "anti_gbm", "lupus_full_house", "negative"}
    assert TASK.one_label_per_group and TASK.default_size == 128 and TASK.fields is None
    style = TASK.sample_style(np.random.default_rng(0))
    assert style and all(isinstance(v, float) for v in style.values())
    with pytest.raises(ValueError, match="unknown class"):
        TASK.render("minimal_change", np.random.default_rng(0), 32)


def test_render_is_deterministic_and_seed_dependent() -> None:
    style = TASK.sample_style(np.random.default_rng(3))
    a = TASK.render("membranous", np.random.default_rng(7), 64, style)
    b = TASK.render("membranous", np.random.default_rng(7), 64, style)
    c = TASK.render("membranous", np.random.default_rng(8), 64, style)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    params = _params("lupus_full_house")
    assert np.array_equal(k.draw(params, 48), k.draw(params, 48))  # draw itself is pure


def test_write_twice_gives_identical_bytes(tmp_path: Path) -> None:
    df = write_phantoms("kidney-if", tmp_path / "a", n=5, seed=2, size=40)
    write_phantoms("kidney-if", tmp_path / "b", n=5, seed=2, size=40)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 6
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert set(df.columns) >= TRUTH_KEYS and set(df.label) == set(TASK.classes)
    assert (df.groupby("group")["label"].nunique() == 1).all()  # one biopsy, one diagnosis


@pytest.mark.parametrize("size", [40, 96])
def test_images_are_uint8_rgb_green_on_dark(size: int) -> None:
    for i, label in enumerate(TASK.classes):
        img, truth = TASK.render_with_truth(label, np.random.default_rng([4, i]), size)
        assert img.dtype == np.uint8 and img.shape == (size, size, 3)
        assert set(truth) >= TRUTH_KEYS and truth["blur_sigma"] > 0
        mean = img.reshape(-1, 3).mean(0)
        assert 3 < mean[1] < 110 and img[..., 1].max() > 60  # dark background, visible structures
        assert mean[1] > mean[0] and mean[1] > mean[2]  # FITC green


def test_geometry_truth_in_range() -> None:
    for i, label in enumerate(TASK.classes):
        params = _params(label, i)
        t = k.truth(params, 128)
        assert 90 <= t["glomerulus_diameter_um"] <= 230
        assert t["field_um"] > t["glomerulus_diameter_um"] * 1.1  # tuft, capsule and some interstitium
        assert 4 <= t["n_lobules"] <= 7 and 25 <= t["n_loops"] <= 300 and t["n_tubules"] >= 3
        masks = k.structure_masks(params, 96)
        assert all(m.shape == (96, 96) and m.max() > 0.5 for m in masks.values())
        # capillary lumens sit inside the tuft, tubules outside Bowman's capsule
        lumens, tubules = masks["lumens"] > 0.5, masks["tubules"] > 0.5
        assert masks["tuft"][lumens].mean() > 0.95 and masks["tuft"][tubules].max() < 0.5


def test_anti_gbm_is_linear_without_granules() -> None:
    for i in range(3):
        params = _params("anti_gbm", i)
        t = k.truth(params, 128)
        assert t["deposit_count"] == 0 and t["linear_gbm"] > 0 and t["intensity"] > 0
        img = k.draw(_sharp(params), 192)[..., 1].astype(float)
        m = k.structure_masks(params, 192)
        wall = (m["gbm"] > 0.5) & (m["mesangium"] < 0.1)
        # smooth continuous line: bright and nearly uniform along the walls, dark mesangium
        assert img[wall].std() / img[wall].mean() < 0.35
        assert img[m["mesangium"] > 0.5].mean() < 0.5 * img[wall].mean()


def test_membranous_deposits_are_fine_granules_on_capillary_walls() -> None:
    for i in range(3):
        params = _params("membranous", i)
        t = k.truth(params, 128)
        assert t["mesangial_deposits"] == 0 and t["linear_gbm"] == 0
        assert t["capillary_deposits"] >= 6 * t["n_loops"]  # a garland of dots around every loop
        m = k.structure_masks(params, 256)
        assert _on_mask(params["deposits"]["capillary"]["points"], params, m["gbm"], 256) > 0.97
        assert _on_mask(params["deposits"]["capillary"]["points"], params, m["mesangium"], 256) < 0.1
        assert params["deposits"]["capillary"]["sigma_um"] < 1.0  # fine
        img = k.draw(_sharp(params), 192)[..., 1].astype(float)
        m = k.structure_masks(params, 192)
        wall = (m["gbm"] > 0.5) & (m["mesangium"] < 0.1)
        assert img[wall].std() / img[wall].mean() > 0.35  # beaded, not linear
        assert img[m["mesangium"] > 0.5].mean() < 0.6 * img[wall].mean()


def test_iga_deposits_follow_the_mesangial_tree() -> None:
    for i in range(3):
        params = _params("iga_mesangial", i)
        t = k.truth(params, 128)
        assert t["mesangial_deposits"] > 40 and t["linear_gbm"] == 0
        if t["subtype"] == "mesangial":
            assert t["capillary_deposits"] == 0
        m = k.structure_masks(params, 256)
        assert _on_mask(params["deposits"]["mesangial"]["points"], params, m["mesangium"], 256) > 0.85
        assert _on_mask(params["deposits"]["mesangial"]["points"], params, m["gbm"], 256) < 0.25
        img = k.draw(_sharp(params), 128)[..., 1].astype(float)
        m = k.structure_masks(params, 128)
        wall = (m["gbm"] > 0.5) & (m["mesangium"] < 0.1)
        assert img[m["mesangium"] > 0.5].mean() > 2.5 * img[wall].mean()


def test_lupus_is_full_house() -> None:
    for i in range(3):
        t = k.truth(_params("lupus_full_house", i), 128)
        assert t["mesangial_deposits"] > 20 and t["capillary_deposits"] > 50
        assert t["extraglomerular_deposits"] > 0 and t["deposit_count"] > t["capillary_deposits"]


def test_negative_has_no_specific_deposits_but_overlapping_brightness() -> None:
    means = {label: [] for label in TASK.classes}
    for i in range(3):
        for label in TASK.classes:
            params = _params(label, i)
            img = k.draw(params, 64)
            means[label].append(img[..., 1].mean())
            if label == "negative":
                t = k.truth(params, 64)
                assert t["deposit_count"] == 0 and t["linear_gbm"] == 0 and t["intensity"] == 0
                m = k.structure_masks(params, 64)
                wall = (m["gbm"] > 0.5) & (m["mesangium"] < 0.1)
                g = img[..., 1].astype(float) - np.percentile(img[..., 1], 5)
                assert g[wall].mean() < 0.7 * g[m["tubules"] > 0.5].mean()  # only autofluorescence
    positive = [v for label, vals in means.items() if label != "negative" for v in vals]
    # brightness alone does not give the negative class away
    assert min(positive) < max(means["negative"]) and min(means["negative"]) < max(positive)


def test_blur_extra_increases_blur_sigma_and_removes_detail() -> None:
    style = TASK.sample_style(np.random.default_rng(5))
    sharp, t0 = TASK.render_with_truth("membranous", np.random.default_rng(6), 96, style)
    blurred, t1 = TASK.render_with_truth("membranous", np.random.default_rng(6), 96, style, 3 * BLUR_STEP)
    assert t1["blur_sigma"] > t0["blur_sigma"] + 2.5
    assert t1["n_loops"] == t0["n_loops"] and t1["deposit_count"] == t0["deposit_count"]

    def detail(img: np.ndarray) -> float:
        return float(cv2.Laplacian(img[..., 1].astype(np.float32), cv2.CV_32F).var())

    assert detail(blurred) < 0.3 * detail(sharp)
