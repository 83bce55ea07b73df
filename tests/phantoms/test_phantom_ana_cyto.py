"""Tests for the cytoplasmic ANA HEp-2 phantoms (``ana-hep2-cyto``): whole cells with exact masks."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pandas as pd
import pytest

from lablens.phantoms import PHANTOMS, get_task, write_phantoms
from lablens.phantoms import ana_cyto as cy
from lablens.phantoms import ana_hep2 as ana
from lablens.phantoms.draw import Frame

TASK = get_task("ana-hep2-cyto")


@functools.cache
def _field(label: str, seed: int, size: int, titer_log2: float | None = None) -> tuple:
    """Parameters, image and instances of one field (cached: several tests read the same fields)."""
    rng = np.random.default_rng([seed, cy.FIELD_CLASSES.index(label)])
    style = cy.sample_style(rng)
    if titer_log2 is not None:
        style["titer_log2"] = titer_log2
    params = cy.sample_field(label, rng, style)
    img, instances = cy.draw_field(params, size)
    return params, img, instances


def _nucleus(cell: dict, fr: Frame, box: tuple[int, int, int, int]) -> np.ndarray:
    """The cell's nuclear footprint on the pixel box ``(x0, y0, x1, y1)``, from its geometry (µm)."""
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1]
    pts = (np.column_stack([xx.ravel(), yy.ravel()]) - fr.centre) / fr.ppu
    return ana._inside(cell, pts).reshape(y1 - y0, x1 - x0)


def _cytoplasm_and_nucleus(params: dict, img: np.ndarray, instances: list) -> list[dict[str, float]]:
    """Per interphase cell: mean green of its cytoplasm and nuclear core, and the cytoplasm's coherence.

    Both regions stay ~1 µm clear of the nuclear edge and the cytoplasm ~1 µm clear of the cell edge.
    Coherence is that of the structure tensor summed over the cytoplasm: 1 for one orientation, 0 for none.
    """
    size = img.shape[0]
    fr = Frame(size, params["field_um"])
    green = img[..., 1].astype(np.float32)
    smooth = cv2.GaussianBlur(green, (0, 0), 1.0)
    gx, gy = cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    k = 2 * max(round(fr.ppu), 1) + 1
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    out = []
    for cell, inst in zip(params["cells"], instances, strict=True):
        if cell["phase"] != "interphase":
            continue
        x0, y0, x1, y1 = inst.box()
        pad = k
        x0, y0, x1, y1 = max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, size), min(y1 + pad, size)
        own = inst.mask[y0:y1, x0:x1]
        nuc = _nucleus(cell, fr, (x0, y0, x1, y1)).astype(np.uint8)
        core = cv2.erode(nuc, disc).astype(bool) & own
        cyto = cv2.erode(own.astype(np.uint8), disc).astype(bool) & ~cv2.dilate(nuc, disc).astype(bool)
        if core.sum() < 10 or cyto.sum() < 30:
            continue
        g, sx, sy = green[y0:y1, x0:x1], gx[y0:y1, x0:x1][cyto], gy[y0:y1, x0:x1][cyto]
        jxx, jyy, jxy = float((sx * sx).sum()), float((sy * sy).sum()), float((sx * sy).sum())
        out.append(
            {
                "cyto": float(g[cyto].mean()),
                "nucleus": float(g[core].mean()),
                "coherence": np.hypot(jxx - jyy, 2 * jxy) / max(jxx + jyy, 1e-9),
            }
        )
    return out


def test_task_is_registered() -> None:
    assert TASK is cy.TASK and PHANTOMS.value("ana-hep2-cyto") is TASK
    assert TASK.classes == ("fibrillar", "mitochondrial")
    assert TASK.one_label_per_group and TASK.default_size == 128
    assert TASK.fields is not None and TASK.fields.classes == ("fibrillar", "mitochondrial", "negative")
    assert TASK.fields.instance_classes == ("cell",) and TASK.fields.one_label_per_group
    style = TASK.sample_style(np.random.default_rng(0))
    assert style and all(isinstance(v, float) for v in style.values())


def test_render_is_deterministic_and_seed_dependent() -> None:
    style = TASK.sample_style(np.random.default_rng(4))
    for label in TASK.classes:
        a = TASK.render(label, np.random.default_rng(7), 64, style)
        b = TASK.render(label, np.random.default_rng(7), 64, style)
        c = TASK.render(label, np.random.default_rng(8), 64, style)
        assert np.array_equal(a, b) and not np.array_equal(a, c)
    for label in TASK.fields.classes:
        a_img, a_inst, a_truth = TASK.render_field(label, np.random.default_rng(3), 128, style)
        b_img, b_inst, b_truth = TASK.render_field(label, np.random.default_rng(3), 128, style)
        c_img, _, _ = TASK.render_field(label, np.random.default_rng(4), 128, style)
        assert np.array_equal(a_img, b_img) and a_truth == b_truth and not np.array_equal(a_img, c_img)
        assert len(a_inst) == len(b_inst)
        for x, y in zip(a_inst, b_inst, strict=True):
            assert np.array_equal(x.mask, y.mask) and x.center == y.center and x.attrs == y.attrs


def test_render_rejects_unknown_label() -> None:
    with pytest.raises(ValueError, match="unknown class"):
        TASK.render("negative", np.random.default_rng(0), 32)  # a field class only
    with pytest.raises(ValueError, match="unknown class"):
        TASK.render_field("homogeneous", np.random.default_rng(0), 32)


@pytest.mark.parametrize("label", ["fibrillar", "mitochondrial", "negative"])
def test_field_cells_are_exact_and_never_overlap(label: str) -> None:
    size = 256
    params, img, instances = _field(label, 21, size)
    t = cy.field_truth(params, size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert 30 <= t["n_cells"] <= 80 and len(instances) == t["n_cells"] == len(params["cells"])
    assert (t["titer"] == 0.0) == (label == "negative") and t["subtype"] == cy.ICAP[label]
    fr = Frame(size, params["field_um"])
    occupied = np.zeros((size, size), bool)
    for cell, inst in zip(params["cells"], instances, strict=True):
        assert inst.label == "cell" and not inst.may_overlap and inst.attrs["pattern"] == label
        assert inst.mask.shape == (size, size) and inst.mask.dtype == bool and inst.mask.any()
        assert not (occupied & inst.mask).any()  # cells never share a pixel
        occupied |= inst.mask
        cx, cy_ = inst.center
        assert np.allclose((cx, cy_), fr.xy(cell["center"]))
        assert inst.mask[round(cy_), round(cx)]  # the cell holds its own nucleus' centre
        x0, y0, x1, y1 = inst.box()
        assert x0 - 0.5 <= cx <= x1 - 0.5 and y0 - 0.5 <= cy_ <= y1 - 0.5
    for i, a in enumerate(params["cells"]):  # nuclei never overlap in µm either
        assert not any(ana._clash_wide(a, b, 0.0) for b in params["cells"][:i])


def test_cell_masks_are_whole_cells_not_nuclei() -> None:
    """A cell mask holds its whole nucleus and a cytoplasm of a few times the nuclear area."""
    size = 256
    params, _, instances = _field("mitochondrial", 5, size)
    fr = Frame(size, params["field_um"])
    ratios = []
    for cell, inst in zip(params["cells"], instances, strict=True):
        if cell["phase"] != "interphase":
            continue
        (cx, cy_), reach = fr.xy(cell["center"]), ana._reach(cell["nucleus"]) * fr.ppu + 2
        x0, y0 = max(int(cx - reach), 0), max(int(cy_ - reach), 0)
        x1, y1 = min(int(cx + reach) + 1, size), min(int(cy_ + reach) + 1, size)
        nuc = _nucleus(cell, fr, (x0, y0, x1, y1))
        if nuc.sum() < 20:  # mostly outside the field
            continue
        assert (inst.mask[y0:y1, x0:x1] & nuc).sum() >= 0.97 * nuc.sum()
        ratios.append(inst.mask.sum() / nuc.sum())
    assert len(ratios) >= 20 and np.median(ratios) > 2.0


@pytest.mark.parametrize("label", ["fibrillar", "mitochondrial"])
def test_cytoplasm_is_bright_and_nucleus_dark(label: str) -> None:
    for seed in (1, 2):
        params, img, instances = _field(label, seed, 384)
        cells = _cytoplasm_and_nucleus(params, img, instances)
        assert len(cells) >= 20
        ratio = np.array([c["cyto"] / max(c["nucleus"], 1.0) for c in cells])
        assert np.mean(ratio > 1.5) >= 0.95 and np.median(ratio) > 2.5


def test_negative_is_dim_with_nuclei_brighter_than_cytoplasm() -> None:
    params, img, instances = _field("negative", 1, 384, titer_log2=2.5)
    cells = _cytoplasm_and_nucleus(params, img, instances)
    assert np.median([c["nucleus"] / max(c["cyto"], 1.0) for c in cells]) > 1.5
    _, pos_img, pos_instances = _field("mitochondrial", 1, 384, titer_log2=2.5)
    inside = np.zeros(img.shape[:2], bool)
    for inst in instances:
        inside |= inst.mask
    pos_inside = np.zeros(img.shape[:2], bool)
    for inst in pos_instances:
        pos_inside |= inst.mask
    assert img[..., 1][inside].mean() < 0.4 * pos_img[..., 1][pos_inside].mean()


def test_fibrillar_cells_are_oriented_and_mitochondrial_not() -> None:
    """Stress fibres make the cytoplasm's structure tensor coherent; mitochondrial granules do not."""
    coherence = {}
    for label in ("fibrillar", "mitochondrial"):
        values = []
        for seed in (1, 2):
            params, img, instances = _field(label, seed, 384)
            values += [c["coherence"] for c in _cytoplasm_and_nucleus(params, img, instances)]
        coherence[label] = np.array(values)
    fib, mito = coherence["fibrillar"], coherence["mitochondrial"]
    assert np.median(fib) > 0.3 and np.median(mito) < 0.2
    assert np.median(fib) > 2.0 * np.median(mito)
    assert np.mean(fib > np.percentile(mito, 90)) > 0.7


def test_fibres_are_several_long_and_few_orientations() -> None:
    for i in range(5):
        rng = np.random.default_rng([6, i])
        params = cy.sample_field("fibrillar", rng, cy.sample_style(rng))
        for cell in params["cells"]:
            fibres = cell["fibres"]
            if cell["phase"] != "interphase":
                assert fibres == []
                continue
            assert len(fibres) >= 4
            vec = np.array([np.subtract(f["b"], f["a"]) for f in fibres])
            length = np.hypot(*vec.T)
            assert length.min() >= 4.0 * 0.6 and np.median(length) > 8.0  # µm
            angles = np.degrees(np.arctan2(vec[:, 1], vec[:, 0]))
            assert _orientations(angles) <= 3  # parallel bundles, one to three orientations
    rng = np.random.default_rng(0)
    assert all(not c["fibres"] for c in cy.sample_field("mitochondrial", rng, cy.sample_style(rng))["cells"])


def _orientations(degrees: np.ndarray, tol: float = 0.01) -> int:
    """Number of distinct line orientations (mod 180 degrees) among ``degrees``."""
    found: list[float] = []
    for a in np.asarray(degrees) % 180.0:
        if not any(min(abs(a - b), 180.0 - abs(a - b)) < tol for b in found):
            found.append(float(a))
    return len(found)


def test_crops_hold_the_whole_target_cell() -> None:
    for label in TASK.classes:
        for i in range(12):
            rng = np.random.default_rng([12, i])
            params = cy.sample_params(label, rng, cy.sample_style(rng))
            _, masks = cy._render(params, 96, want_masks=True)
            target = masks[0]
            assert target.any()
            assert not (target[0].any() or target[-1].any() or target[:, 0].any() or target[:, -1].any())
            assert target[46:50, 46:50].any()  # centred on the cell


def test_crop_truth_and_titer() -> None:
    rng = np.random.default_rng(3)
    params = cy.sample_params("fibrillar", rng, cy.sample_style(rng))
    t = cy.truth(params, 128)
    assert (
        t["subtype"] == "AC-15" and t["blur_sigma"] > 0 and t["n_fibres"] == len(params["cells"][0]["fibres"])
    )
    assert cy.truth(params, 256)["blur_sigma"] == pytest.approx(2 * t["blur_sigma"], rel=1e-3)
    assert 10.0 <= t["cell_um"] <= 34.0 and t["cell_um"] > t["nucleus_um"]
    low, high = cy.sample_style(np.random.default_rng(0)), cy.sample_style(np.random.default_rng(0))
    low["titer_log2"], high["titer_log2"] = 0.0, 4.0
    for label in TASK.classes:
        a = TASK.render(label, np.random.default_rng(2), 64, low).astype(float)
        b = TASK.render(label, np.random.default_rng(2), 64, high).astype(float)
        assert b[..., 1].mean() > 1.5 * a[..., 1].mean()
    t_low = TASK.render_with_truth("mitochondrial", np.random.default_rng(2), 32, low)[1]["titer"]
    t_high = TASK.render_with_truth("mitochondrial", np.random.default_rng(2), 32, high)[1]["titer"]
    assert (t_low, t_high) == (80.0, 1280.0)


def test_written_fields_have_cell_boxes_of_cell_size(tmp_path) -> None:
    size = 384
    df = write_phantoms(get_task("ana-hep2-cyto"), tmp_path / "f", n=6, seed=0, fields=True, size=size)
    manifest = pd.read_csv(tmp_path / "f" / "manifest.csv")
    cells = pd.read_csv(tmp_path / "f" / "cells.csv")
    assert len(df) == len(manifest) == 6 and set(manifest.label) == set(cy.FIELD_CLASSES)
    for col in ("n_cells", "n_mitotic", "titer", "intensity", "blur_sigma", "field_um"):
        assert col in manifest.columns and manifest[col].notna().all()
    assert (manifest.n_objects == manifest.n_cells).all() and len(cells) == manifest.n_cells.sum()
    assert set(cells.label) == {"cell"} and {"pattern", "phase", "intensity", "n_fibres"} <= set(
        cells.columns
    )
    cells = cells.merge(manifest[["path", "field_um"]], on="path")
    um_per_px = cells.field_um / size
    width, height = (cells.x1 - cells.x0) * um_per_px, (cells.y1 - cells.y0) * um_per_px
    inner = (cells.x0 > 0) & (cells.y0 > 0) & (cells.x1 < size) & (cells.y1 < size)  # not cut by the edge
    side = np.maximum(width, height)[inner]
    assert inner.sum() > 100
    assert side.between(13.0, 38.0).all() and 18.0 < side.median() < 32.0
    assert np.minimum(width, height)[inner].min() > 9.0
