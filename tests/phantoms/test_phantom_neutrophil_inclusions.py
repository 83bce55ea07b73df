"""Tests for the neutrophil-inclusions phantom task (NeuNN classes); small sizes, a few seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lablens.phantoms import PHANTOMS, write_phantoms
from lablens.phantoms import blood_cells as bc
from lablens.phantoms import neutrophil_inclusions as ni
from lablens.phantoms.draw import Frame

TASK = ni.TASK
CLASSES = ("neu", "hyp", "cry", "db", "hjbli", "gbi", "bac")
N_PER_CLASS = 24


def _style(g: int) -> dict[str, float]:
    return TASK.sample_style(np.random.default_rng([0, 7919, g]))


@pytest.fixture(scope="module")
def sampled() -> dict[str, list[tuple[dict, dict]]]:
    """``N_PER_CLASS`` parameter dicts and their truth per class (no drawing: fast)."""
    out: dict[str, list[tuple[dict, dict]]] = {}
    for i, label in enumerate(CLASSES):
        rows = []
        for k in range(N_PER_CLASS):
            params = ni.sample_params(label, np.random.default_rng([11, i, k]), _style(k % 6))
            rows.append((params, ni.truth(params, 128)))
        out[label] = rows
    return out


def _truths(sampled: dict, label: str, key: str) -> np.ndarray:
    return np.array([t[key] for _, t in sampled[label]])


def test_task_registered() -> None:
    assert PHANTOMS.value("neutrophil-inclusions") is TASK
    assert TASK.name == "neutrophil-inclusions"
    assert TASK.classes == CLASSES
    assert TASK.one_label_per_group is True
    assert TASK.default_size == 128
    style = TASK.sample_style(np.random.default_rng(0))
    assert set(bc.sample_style(np.random.default_rng(0))) < set(style)
    assert all(isinstance(v, float) for v in style.values())


def test_same_seed_same_pixels_and_truth() -> None:
    for label in CLASSES:
        a, ta = TASK.render_with_truth(label, np.random.default_rng([3, 1]), 48, _style(2))
        b, tb = TASK.render_with_truth(label, np.random.default_rng([3, 1]), 48, _style(2))
        c, _ = TASK.render_with_truth(label, np.random.default_rng([3, 2]), 48, _style(2))
        assert np.array_equal(a, b) and ta == tb
        assert not np.array_equal(a, c)


def test_write_is_byte_identical_and_one_label_per_group(tmp_path: Path) -> None:
    df = write_phantoms("neutrophil-inclusions", tmp_path / "a", n=14, seed=5, size=40)
    write_phantoms("neutrophil-inclusions", tmp_path / "b", n=14, seed=5, size=40)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 15  # 14 images + manifest
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert set(df.label) == set(CLASSES)
    assert (df.groupby("group").label.nunique() == 1).all()
    for col in (
        "blur_sigma",
        "subtype",
        "n_inclusions",
        "n_lobes",
        "n_vacuoles",
        "n_granules",
        "granularity",
    ):
        assert col in df.columns


def test_images_are_uint8_rgb_and_not_blank() -> None:
    for i, label in enumerate(CLASSES):
        for size in (40, 64):
            img = TASK.render(label, np.random.default_rng([8, i]), size, _style(i))
            assert img.dtype == np.uint8 and img.shape == (size, size, 3)
            assert 60 < img.mean() < 245 and img.std() > 8


def test_render_rejects_unknown_label() -> None:
    with pytest.raises(ValueError, match="unknown class"):
        TASK.render("eosinophil", np.random.default_rng(0), 32)


def test_extra_blur_is_applied_and_reported() -> None:
    style = _style(0)
    sharp, t0 = TASK.render_with_truth("hjbli", np.random.default_rng(4), 64, style)
    soft, t1 = TASK.render_with_truth("hjbli", np.random.default_rng(4), 64, style, extra_blur_frac=3 / 96)
    assert t1["blur_sigma"] == pytest.approx(np.hypot(t0["blur_sigma"], 2.0), abs=1e-3)

    def edges(im: np.ndarray) -> float:  # gradient energy of 2x2-binned pixels (averages sensor noise out)
        binned = im.astype(float).reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
        return float(np.abs(np.diff(binned, axis=0)).mean() + np.abs(np.diff(binned, axis=1)).mean())

    assert edges(soft) < 0.8 * edges(sharp)


def test_inclusion_counts_per_class(sampled: dict) -> None:
    for label in ("neu", "hyp"):
        assert (_truths(sampled, label, "n_inclusions") == 0).all()
        assert (_truths(sampled, label, "inclusion_area_um2") == 0).all()
    hj = _truths(sampled, "hjbli", "n_inclusions")
    assert set(hj) <= {1, 2} and set(hj) == {1, 2}
    for _, t in sampled["hjbli"]:
        assert t["subtype"] == ("single" if t["n_inclusions"] == 1 else "double")
    for label in ("cry", "db", "gbi"):
        assert (_truths(sampled, label, "n_inclusions") >= 1).all()
    assert all(t["n_inclusions"] == 1 for _, t in sampled["cry"] if t["subtype"] == "large")
    bac = _truths(sampled, "bac", "n_inclusions")
    assert (bac > 0).all() and (_truths(sampled, "bac", "n_vacuoles") >= 1).all()
    assert set(_truths(sampled, "bac", "subtype")) <= {"rods", "cocci", "mixed"}
    rods = [p for p, t in sampled["bac"] if t["subtype"] == "rods"]
    assert rods and all(inc["shape"] == "rod" for p in rods for inc in p["inclusions"])


def test_hypogranular_has_far_fewer_granules(sampled: dict) -> None:
    hyp, neu = _truths(sampled, "hyp", "n_granules"), _truths(sampled, "neu", "n_granules")
    assert hyp.max() < neu.min()
    assert hyp.mean() < 0.15 * neu.mean()


def test_inclusions_are_small_next_to_the_field(sampled: dict) -> None:
    for label in CLASSES:
        for params, t in sampled[label]:
            cell = params["cell"]
            cell_area = np.pi * cell["radius"] ** 2 * cell["aspect"]
            assert t["inclusion_area_um2"] < 0.2 * cell_area  # a minor part of the cytoplasm


def test_inclusions_lie_in_the_cytoplasm(sampled: dict) -> None:
    """Dot, globule and patch centres sit inside the cell and off the nucleus."""
    for label in ("hjbli", "gbi", "db"):
        for params, _ in sampled[label]:
            cell = params["cell"]
            centres = np.array([inc["center"] for inc in params["inclusions"]])
            q = np.hypot(centres[:, 0] / cell["radius"], centres[:, 1] / (cell["radius"] * cell["aspect"]))
            assert (q < 0.92).all()
            if label == "hjbli":
                assert (ni._nuclear_clearance(cell, centres) > 0.0).all()


def _without_inclusions(params: dict) -> dict:
    bare = dict(params)
    bare["inclusions"] = []
    return bare


def test_inclusions_are_drawn_with_their_colour(sampled: dict) -> None:
    """Removing the inclusions changes pixels only inside the cell, in the class's direction."""
    size = 96
    for label in ("hjbli", "gbi", "bac", "db", "cry"):
        params = sampled[label][0][0]
        with_inc = ni.draw(params, size).astype(float)
        bare = ni.draw(_without_inclusions(params), size).astype(float)
        diff = np.abs(with_inc - bare).sum(axis=2)
        assert diff.max() > 30, label
        fr = Frame(size, params["field_um"])
        ys, xs = np.nonzero(diff > 10)
        dist = np.hypot(*(np.column_stack([xs, ys]) - fr.xy(params["cell"]["center"])).T) / fr.ppu
        assert dist.max() < params["cell"]["radius"] * 1.15 + 0.5, label
        changed = diff > 0.5 * diff.max()
        delta = (with_inc - bare)[changed].mean(axis=0)  # mean RGB change where the inclusion is strongest
        if label in ("hjbli", "bac"):
            assert (delta < -20).all(), (label, delta)  # dense dark purple / blue-purple
        elif label == "gbi":
            assert delta[1] - delta[0] > 20, delta  # greener (red absorbed, green passes)
        else:
            assert delta[2] - delta[0] > 5, (label, delta)  # bluer than the cytoplasm it replaces


def test_class_specific_extras(sampled: dict) -> None:
    assert set(_truths(sampled, "hyp", "subtype")) <= {"agranular", "hypogranular"}
    assert set(_truths(sampled, "gbi", "subtype")) <= {"single", "multiple"}
    assert set(_truths(sampled, "cry", "subtype")) <= {"large", "angular", "globular"}
    assert (_truths(sampled, "neu", "toxic_granulation") == 0).all()
    assert _truths(sampled, "bac", "toxic_granulation").any()
    lobes = _truths(sampled, "neu", "n_lobes")
    assert lobes.min() >= 1 and lobes.max() <= 5
