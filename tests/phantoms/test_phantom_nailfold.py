"""Tests for the nailfold videocapillaroscopy phantoms (fast: parameters, a few small images and fields)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from lablens.phantoms import PHANTOMS, write_phantoms
from lablens.phantoms import draw as d
from lablens.phantoms import nailfold as nf
from lablens.phantoms.draw import Frame

TASK = PHANTOMS.value("nailfold")
TRUTH_COLUMNS = (
    "capillaries_per_mm",
    "n_giant",
    "n_haemorrhage",
    "n_ramified",
    "ssc_landscape",
    "blur_sigma",
)


def _all_truths(label: str, n: int = 25) -> list[dict]:
    """Truth of ``n`` parameter draws of ``label``, each under its own synthetic patient."""
    out = []
    for i in range(n):
        rng = np.random.default_rng([11, i])
        params = nf.sample_params(label, rng, nf.sample_style(rng))
        out.append(nf.truth(params, 256))
    return out


def _truths(label: str, n: int = 25) -> list[dict]:
    """The draws of ``label`` whose field shows that pattern (not a spared, milder finger)."""
    out = [t for t in _all_truths(label, n) if t["shown_pattern"] == label]
    assert len(out) >= n // 2
    return out


def test_spared_fingers_show_the_next_milder_pattern_under_the_patients_label() -> None:
    milder = {"ssc_early": "normal", "ssc_active": "ssc_early", "ssc_late": "ssc_active"}
    assert all(t["shown_pattern"] == "normal" for t in _all_truths("normal", 40))
    for label, mild in milder.items():
        shown = [t["shown_pattern"] for t in _all_truths(label, 200)]
        assert set(shown) == {label, mild}
        assert 0.05 < shown.count(mild) / len(shown) < 0.2
        assert all(t["ssc_landscape"] == 1 for t in _all_truths(label, 10))


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_task_table() -> None:
    assert TASK is nf.TASK and TASK.name == "nailfold"
    assert TASK.classes == ("normal", "ssc_early", "ssc_active", "ssc_late")
    assert TASK.one_label_per_group and TASK.default_size == 256
    assert TASK.fields is not None and TASK.fields.classes == TASK.classes
    assert TASK.fields.instance_classes == ("normal", "dilated", "giant", "ramified", "haemorrhage")
    assert TASK.fields.one_label_per_group and TASK.fields.default_size == 512
    style = TASK.sample_style(np.random.default_rng(0))
    assert style and all(isinstance(v, float) for v in style.values())


def test_render_is_deterministic_and_seed_dependent() -> None:
    style = TASK.sample_style(np.random.default_rng(4))
    for label in TASK.classes:
        a = TASK.render(label, np.random.default_rng(7), 64, style)
        b = TASK.render(label, np.random.default_rng(7), 64, style)
        c = TASK.render(label, np.random.default_rng(8), 64, style)
        assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_write_twice_gives_identical_bytes_and_truth(tmp_path: Path) -> None:
    df = write_phantoms("nailfold", tmp_path / "a", n=8, seed=2, size=48)
    write_phantoms("nailfold", tmp_path / "b", n=8, seed=2, size=48)
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    on_disk = pd.read_csv(tmp_path / "a" / "manifest.csv")
    for col in TRUTH_COLUMNS:
        assert col in on_disk.columns and on_disk[col].notna().all()
    assert set(on_disk.label) == set(TASK.classes)
    assert (on_disk.ssc_landscape == (on_disk.label != "normal").astype(int)).all()
    assert (on_disk.groupby("group").label.nunique() == 1).all()  # one patient, one pattern
    assert len(df) == 8


@pytest.mark.parametrize("size", [40, 64, 128])
def test_images_are_uint8_rgb_pinkish_and_not_blank(size: int) -> None:
    style = TASK.sample_style(np.random.default_rng(1))
    for i, label in enumerate(TASK.classes):
        img = TASK.render(label, np.random.default_rng([5, i]), size, style)
        assert img.dtype == np.uint8 and img.shape == (size, size, 3)
        assert 50 < img.mean() < 240 and img.std() > 5
        r, g, b = img.reshape(-1, 3).mean(axis=0)
        assert r > g and r > b  # red skin and red capillaries


def test_render_rejects_unknown_label() -> None:
    with pytest.raises(ValueError, match="unknown class"):
        TASK.render("raynaud", np.random.default_rng(0), 32)


def test_ssc_landscape_for_every_class() -> None:
    for label in TASK.classes:
        assert {t["ssc_landscape"] for t in _truths(label, 5)} == {int(label != "normal")}


def test_normal_is_a_regular_row_of_thin_loops() -> None:
    for t in _truths("normal"):
        assert 8.0 <= t["capillaries_per_mm"] <= 12.0
        assert t["n_giant"] == t["n_ramified"] == t["n_haemorrhage"] == 0
        assert t["n_dilated"] <= 1  # one mildly dilated loop occurs in healthy subjects
        assert t["max_apical_diameter_um"] <= (32.0 if t["n_dilated"] else 20.0)
        assert t["max_gap_um"] < 200.0  # no avascular area


def test_early_keeps_density_with_a_few_enlarged_loops() -> None:
    for t in _truths("ssc_early"):
        assert 7.0 <= t["capillaries_per_mm"] <= 10.0
        assert 1 <= t["n_giant"] <= 2 and t["n_dilated"] <= 2
        assert nf.GIANT_UM <= t["max_apical_diameter_um"] <= 66.0
        assert t["n_haemorrhage"] <= 2 and t["n_ramified"] == 0


def test_active_has_giants_haemorrhages_and_moderate_loss() -> None:
    for t in _truths("ssc_active"):
        assert 4.0 <= t["capillaries_per_mm"] <= 7.0
        assert t["n_giant"] >= 3 and t["max_apical_diameter_um"] >= nf.GIANT_UM
        assert t["n_haemorrhage"] >= 3


def test_late_has_severe_loss_ramified_loops_and_few_giants() -> None:
    truths = _truths("ssc_late")
    for t in truths:
        assert t["capillaries_per_mm"] < 4.0
        assert t["n_ramified"] >= 1 and t["n_giant"] <= 1 and t["n_haemorrhage"] <= 1
    assert np.mean([t["max_gap_um"] for t in truths]) > 300.0  # avascular areas


def test_truth_blur_sigma_is_in_output_pixels() -> None:
    rng = np.random.default_rng(3)
    params = nf.sample_params("normal", rng, nf.sample_style(rng))
    small, large = nf.truth(params, 128)["blur_sigma"], nf.truth(params, 512)["blur_sigma"]
    assert small > 0 and large == pytest.approx(4 * small, rel=1e-3)
    _, with_extra = TASK.render_with_truth("normal", np.random.default_rng(3), 128, extra_blur_frac=2 / 96)
    assert with_extra["blur_sigma"] == pytest.approx(float(np.hypot(small, 128 * 2 / 96)), abs=1e-3)


def test_piecewise_vessel_masks_equal_capsule_chains() -> None:
    rng = np.random.default_rng(9)
    params = nf.sample_params("ssc_late", rng, nf.sample_style(rng))
    for size in (48, 300):
        fr = Frame(size, params["field_um"])
        for chains in [lp["chains"] for lp in params["loops"]] + [params["plexus"]]:
            ref = d.union(
                *[
                    d.capsule_chain(
                        (size, size), fr.xy(c["points"]), np.asarray(c["radii"]) * fr.ppu, softness=0.9
                    )
                    for c in chains
                ]
            )
            assert np.abs(nf._chain_masks((size, size), fr, chains, 0.9) - ref).max() < 1e-4


def _inscribed_diameter_um(mask: np.ndarray, ppu: float) -> float:
    """Widest vessel of a capillary mask: twice the largest distance to its edge, in µm."""
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)
    return 2.0 * float(dist.max()) / ppu


@pytest.mark.parametrize("label", ["normal", "ssc_early", "ssc_active", "ssc_late"])
def test_field_instances_are_exact(label: str) -> None:
    size = 384
    rng = np.random.default_rng([21, TASK.classes.index(label)])
    img, instances, t = TASK.render_field(label, rng, size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    labels = [inst.label for inst in instances]
    assert set(labels) <= set(nf.INSTANCE_CLASSES)
    assert labels.count("giant") == t["n_giant"] and labels.count("ramified") == t["n_ramified"]
    assert labels.count("dilated") == t["n_dilated"] and labels.count("haemorrhage") == t["n_haemorrhage"]
    assert len(labels) - t["n_haemorrhage"] == t["n_capillaries"]
    ppu = size / t["field_um"]
    apices = [inst.center for inst in instances if inst.label != "haemorrhage"]
    for inst in instances:
        assert inst.mask.shape == (size, size) and inst.mask.dtype == bool and inst.mask.any()
        x0, y0, x1, y1 = inst.box()
        cx, cy = inst.center
        assert x0 - 0.5 <= cx <= x1 - 0.5 and y0 - 0.5 <= cy <= y1 - 0.5
        width = _inscribed_diameter_um(inst.mask, ppu)
        if inst.label == "normal":
            assert width <= 2 * nf.DILATED_UM  # thin arms; twice the limit allows for crossing arms
        elif inst.label == "giant":
            assert width >= 0.85 * nf.GIANT_UM
        elif inst.label == "haemorrhage":  # a deposit distal to (above) some capillary apex
            assert any(ay > cy and abs(ax - cx) < 120 * ppu for ax, ay in apices)
    for i, a in enumerate(instances):
        for b in instances[i + 1 :]:
            if not a.may_overlap and not b.may_overlap:
                assert not (a.mask & b.mask).any()
            if (a.mask & b.mask).any():
                assert a.may_overlap and b.may_overlap
