"""Tests for the ANA HEp-2 immunofluorescence phantoms (fast: parameters, a few small crops and fields)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lablens.phantoms import PHANTOMS, write_phantoms
from lablens.phantoms import ana_hep2 as ana
from lablens.phantoms.draw import Frame

TASK = PHANTOMS.value("ana-hep2")
TRUTH_COLUMNS = ("subtype", "phase", "mitotic", "n_dots", "n_nucleoli", "titer", "intensity", "blur_sigma")


def _crops(label: str, n: int = 40, seed: int = 11) -> list[dict]:
    """Parameters of ``n`` crops of ``label``, each under its own synthetic serum."""
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        out.append(ana.sample_params(label, rng, ana.sample_style(rng)))
    return out


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_task_table() -> None:
    assert TASK is ana.TASK and TASK.name == "ana-hep2"
    assert set(TASK.classes) == {
        "homogeneous",
        "fine_speckled",
        "coarse_speckled",
        "centromere",
        "nucleolar",
        "nuclear_dots",
        "nuclear_envelope",
    }
    assert TASK.one_label_per_group and TASK.default_size == 128
    assert TASK.fields is not None and TASK.fields.classes == tuple(sorted((*TASK.classes, "negative")))
    assert TASK.fields.instance_classes == ("interphase", "mitotic")
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
    df = write_phantoms("ana-hep2", tmp_path / "a", n=14, seed=2, size=48)
    write_phantoms("ana-hep2", tmp_path / "b", n=14, seed=2, size=48)
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    on_disk = pd.read_csv(tmp_path / "a" / "manifest.csv")
    assert len(df) == len(on_disk) == 14 and set(on_disk.label) == set(TASK.classes)
    for col in TRUTH_COLUMNS:
        assert col in on_disk.columns and on_disk[col].notna().all()
    assert (on_disk.groupby("group").label.nunique() == 1).all()  # one serum, one pattern
    assert (on_disk.groupby("group").subtype.nunique() == 1).all()  # and one ICAP sub-pattern


def test_fields_are_deterministic_and_written_with_their_objects(tmp_path: Path) -> None:
    style = TASK.sample_style(np.random.default_rng(6))
    a_img, a_inst, a_truth = TASK.render_field("centromere", np.random.default_rng(3), 96, style)
    b_img, b_inst, b_truth = TASK.render_field("centromere", np.random.default_rng(3), 96, style)
    assert np.array_equal(a_img, b_img) and a_truth == b_truth and len(a_inst) == len(b_inst)
    assert all(
        np.array_equal(x.mask, y.mask) and x.attrs == y.attrs for x, y in zip(a_inst, b_inst, strict=True)
    )
    write_phantoms("ana-hep2", tmp_path / "f", n=8, seed=1, size=96, fields=True)
    manifest = pd.read_csv(tmp_path / "f" / "manifest.csv")
    cells = pd.read_csv(tmp_path / "f" / "cells.csv")
    assert set(manifest.label) == set(ana.FIELD_CLASSES)
    for col in ("n_cells", "n_mitotic", "titer", "blur_sigma"):
        assert col in manifest.columns and manifest[col].notna().all()
    assert (manifest.n_objects == manifest.n_cells).all()
    assert len(cells) == manifest.n_cells.sum() and set(cells.label) <= {"interphase", "mitotic"}
    assert {"pattern", "phase", "intensity"} <= set(cells.columns)
    coco = json.loads((tmp_path / "f" / "annotations.json").read_text())
    assert len(coco["annotations"]) == len(cells)


@pytest.mark.parametrize("size", [48, 128])
def test_crops_are_green_on_black(size: int) -> None:
    style = TASK.sample_style(np.random.default_rng(1))
    for i, label in enumerate(TASK.classes):
        img = TASK.render(label, np.random.default_rng([5, i]), size, style)
        assert img.dtype == np.uint8 and img.shape == (size, size, 3)
        r, g, b = img.reshape(-1, 3).astype(float).mean(axis=0)
        assert g > 3 * r and g > 3 * b  # FITC
        assert np.percentile(img[..., 1], 10) < 40 and img[..., 1].max() > 60  # black background, bright cell


def test_render_rejects_unknown_label() -> None:
    with pytest.raises(ValueError, match="unknown class"):
        TASK.render("mitochondrial", np.random.default_rng(0), 32)
    with pytest.raises(ValueError, match="unknown class"):
        TASK.render("negative", np.random.default_rng(0), 32)  # a field class only


def test_centromere_has_40_to_80_equal_dots() -> None:
    for p in _crops("centromere"):
        t, cell = ana.truth(p, 128), p["cells"][0]
        assert 40 <= t["n_dots"] <= 80 and t["subtype"] == "AC-3"
        assert len(set(cell["dots"]["sigma"])) == 1  # equal size
        assert t["n_nucleoli"] == 0


def test_centromere_dots_lie_on_the_plate_in_metaphase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ana, "MITOTIC_SHARE_CROPS", 1.0)
    seen = 0
    for p in _crops("centromere", 20, seed=3):
        cell = p["cells"][0]
        if cell["phase"] != "metaphase":
            continue
        seen += 1
        dots = np.asarray(cell["dots"]["points"])
        plate = np.asarray(cell["chains"][0]["points"])
        half_width = max(cell["chains"][0]["radii"])
        spread_u = np.ptp(dots[:, 0])
        spread_v = np.abs(dots[:, 1] - np.interp(dots[:, 0], plate[:, 0], plate[:, 1])).max()
        assert spread_v <= 1.2 * half_width < spread_u  # a band along the plate
    assert seen >= 3


def test_nucleolar_has_2_to_6_nucleoli() -> None:
    crops = _crops("nucleolar", 60)
    for p in crops:
        t = ana.truth(p, 128)
        if t["phase"] == "interphase":
            assert 2 <= t["n_nucleoli"] <= 6
            nucleoli = p["cells"][0]["nucleoli"]
            for i, a in enumerate(nucleoli):  # separate, so what is drawn is what is counted
                for b in nucleoli[:i]:
                    gap = np.hypot(*(np.asarray(a["center"]) - np.asarray(b["center"])))
                    assert gap > a["radius"] + b["radius"]
        elif t["subtype"] == "AC-10":
            assert t["n_nucleoli"] == 0 and (t["n_dots"] == 0 or 2 <= t["n_dots"] <= 6)
    assert {ana.truth(p, 128)["subtype"] for p in crops} == {"AC-8", "AC-9", "AC-10"}


def test_nuclear_dots_has_3_to_20_dots_of_varying_size() -> None:
    varied = 0
    crops = _crops("nuclear_dots", 60)
    for p in crops:
        t, dots = ana.truth(p, 128), p["cells"][0]["dots"]
        assert 3 <= t["n_dots"] <= 20
        assert t["n_dots"] <= 5 if t["subtype"] == "AC-7" else t["n_dots"] >= 6
        varied += len(set(dots["sigma"])) > 1
    assert varied > len(crops) // 2
    assert {ana.truth(p, 128)["subtype"] for p in crops} == {"AC-6", "AC-7"}


def test_other_patterns_have_no_counted_dots() -> None:
    for label in ("homogeneous", "fine_speckled", "coarse_speckled", "nuclear_envelope"):
        assert all(ana.truth(p, 128)["n_dots"] == 0 for p in _crops(label, 10))


def test_a_share_of_crops_is_mitotic() -> None:
    phases = [ana.truth(p, 64)["phase"] for label in TASK.classes for p in _crops(label, 25)]
    share = np.mean([ph != "interphase" for ph in phases])
    assert 0.07 < share < 0.25
    assert {"interphase", "metaphase"} <= set(phases) <= {"interphase", "prophase", "metaphase", "anaphase"}


def test_homogeneous_mitoses_are_bright_and_speckled_mitoses_dark(monkeypatch: pytest.MonkeyPatch) -> None:
    """AC-1 stains the metaphase plate more than the mitotic cell body; AC-4 leaves it unstained."""
    monkeypatch.setattr(ana, "MITOTIC_SHARE_CROPS", 1.0)

    def plate_over_body(label: str) -> float:
        for i in range(50):
            rng = np.random.default_rng([17, i])
            p = ana.sample_params(label, rng, ana.sample_style(rng))
            if p["cells"][0]["phase"] == "metaphase":
                break
        p["cells"] = p["cells"][:1]
        p["blur_um"] = 0.0
        size = 128
        fr = Frame(size, p["field_um"])
        img = ana.draw(p, size)[..., 1].astype(float)
        cx, cy = np.rint(fr.xy(p["cells"][0]["center"])).astype(int)
        angle = p["cells"][0]["angle"]
        ring = 0.5 * (p["cells"][0]["nucleus"]["radius"] + p["cells"][0]["body"]["radius"]) * fr.ppu
        ox, oy = np.rint([-np.sin(angle) * ring, np.cos(angle) * ring]).astype(int)  # across the plate
        return img[cy - 1 : cy + 2, cx - 1 : cx + 2].mean() / max(img[cy + oy, cx + ox], 1.0)

    assert plate_over_body("homogeneous") > 2.0
    assert plate_over_body("fine_speckled") < 0.8


def test_truth_blur_sigma_is_in_output_pixels() -> None:
    rng = np.random.default_rng(3)
    params = ana.sample_params("homogeneous", rng, ana.sample_style(rng))
    small, large = ana.truth(params, 128)["blur_sigma"], ana.truth(params, 512)["blur_sigma"]
    assert small > 0 and large == pytest.approx(4 * small, rel=1e-3)
    _, with_extra = TASK.render_with_truth(
        "homogeneous", np.random.default_rng(3), 128, extra_blur_frac=2 / 96
    )
    assert with_extra["blur_sigma"] == pytest.approx(float(np.hypot(small, 128 * 2 / 96)), abs=1e-3)


def test_brightness_follows_titer() -> None:
    low, high = ana.sample_style(np.random.default_rng(0)), ana.sample_style(np.random.default_rng(0))
    low["titer_log2"], high["titer_log2"] = 0.0, 4.0
    a = TASK.render("homogeneous", np.random.default_rng(2), 64, low).astype(float)
    b = TASK.render("homogeneous", np.random.default_rng(2), 64, high).astype(float)
    assert b[..., 1].mean() > 1.5 * a[..., 1].mean()
    t_low = TASK.render_with_truth("homogeneous", np.random.default_rng(2), 32, low)[1]["titer"]
    t_high = TASK.render_with_truth("homogeneous", np.random.default_rng(2), 32, high)[1]["titer"]
    assert (t_low, t_high) == (80.0, 1280.0)


@pytest.mark.parametrize("label", ["centromere", "homogeneous", "negative"])
def test_field_instances_are_exact(label: str) -> None:
    size = 224
    rng = np.random.default_rng([21, ana.FIELD_CLASSES.index(label)])
    img, instances, t = TASK.render_field(label, rng, size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert 30 <= t["n_cells"] <= 80 and len(instances) == t["n_cells"]
    labels = [inst.label for inst in instances]
    assert labels.count("mitotic") == t["n_mitotic"] >= 1
    assert 0.02 <= t["n_mitotic"] / t["n_cells"] <= 0.08
    assert (t["titer"] == 0.0) == (label == "negative")
    occupied = np.zeros((size, size), bool)
    for inst in instances:
        assert inst.mask.shape == (size, size) and inst.mask.dtype == bool and inst.mask.any()
        assert not inst.may_overlap and not (occupied & inst.mask).any()  # nuclei never overlap
        occupied |= inst.mask
        x0, y0, x1, y1 = inst.box()
        cx, cy = inst.center
        assert x0 - 0.5 <= cx <= x1 - 0.5 and y0 - 0.5 <= cy <= y1 - 0.5
        assert inst.attrs["pattern"] == label
        assert (inst.label == "mitotic") == (inst.attrs["phase"] != "interphase")


def test_field_nuclei_do_not_overlap_in_micrometres() -> None:
    """The placement itself keeps footprints apart (the pixel masks are not just clipped)."""
    for i in range(3):
        rng = np.random.default_rng([8, i])
        params = ana.sample_field(ana.FIELD_CLASSES[i], rng, ana.sample_style(rng))
        cells = params["cells"]
        for j, a in enumerate(cells):
            assert not any(ana._clash(a, b, 0.0) for b in cells[:j])


def test_field_masks_cover_the_drawn_nuclei() -> None:
    rng = np.random.default_rng(5)
    img, instances, _ = TASK.render_field("homogeneous", rng, 256, ana.sample_style(np.random.default_rng(5)))
    nuclei = np.zeros(img.shape[:2], bool)
    for inst in instances:
        nuclei |= inst.mask
    green = img[..., 1].astype(float)
    assert green[nuclei].mean() > 2.5 * green[~nuclei].mean()
