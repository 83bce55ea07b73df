"""Tests for the synthetic phantom generators (fast: small n, small images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lablens.phantoms import PHANTOMS, group_plan, montage, write_phantoms
from lablens.phantoms import draw as d

TASK = "blood-cells"
CLASSES = PHANTOMS.value(TASK).classes


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_task_table() -> None:
    task = PHANTOMS.value(TASK)
    assert task.name == TASK
    assert task.classes == (
        "basophil",
        "eosinophil",
        "erythroblast",
        "ig",
        "lymphocyte",
        "monocyte",
        "neutrophil",
        "platelet",
    )
    style = task.sample_style(np.random.default_rng(0))
    assert style and all(isinstance(v, float) for v in style.values())


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    write_phantoms(TASK, tmp_path / "a", n=16, seed=3, size=40)
    write_phantoms(TASK, tmp_path / "b", n=16, seed=3, size=40)
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert len(a) == 17  # 16 images + manifest
    assert a == b


def test_different_seed_differs(tmp_path: Path) -> None:
    df_a = write_phantoms(TASK, tmp_path / "a", n=8, seed=0, size=40)
    df_b = write_phantoms(TASK, tmp_path / "b", n=8, seed=1, size=40)
    assert list(df_a.path) == list(df_b.path)
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert all(a[p] != b[p] for p in df_a.path)


def test_manifest_columns_and_counts(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    df = write_phantoms(TASK, out, n=20, seed=0, size=32)
    on_disk = pd.read_csv(out / "manifest.csv")
    assert list(on_disk.columns) == list(df.columns)
    assert len(on_disk) == 20
    for col in ("path", "label", "group", "blur_sigma", "stain_hue", "stain_intensity", "exposure"):
        assert col in on_disk.columns
    counts = on_disk.label.value_counts()
    assert set(counts.index) == set(CLASSES)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 20
    assert on_disk.group.str.fullmatch(r"P\d{3}").all()
    assert on_disk.group.nunique() == 4  # default max(4, n // 25)
    for rel, label in zip(on_disk.path, on_disk.label, strict=True):
        assert rel == f"{label}/{Path(rel).name}" and Path(rel).name.startswith(f"{label}_")
        assert (out / rel).is_file()
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(CLASSES)


def test_groups_hold_several_classes() -> None:
    plan = group_plan(CLASSES, 200, 8)
    by_group: dict[int, set[str]] = {}
    for label, g in plan:
        by_group.setdefault(g, set()).add(label)
    assert sorted(by_group) == list(range(8))
    assert all(len(labels) >= 6 for labels in by_group.values())


def test_refuses_non_empty_directory(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not an empty directory"):
        write_phantoms(TASK, out, n=8, size=32)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(write_phantoms(TASK, empty, n=8, size=32)) == 8


def test_images_are_uint8_rgb_of_requested_size(tmp_path: Path) -> None:
    task = PHANTOMS.value(TASK)
    style = task.sample_style(np.random.default_rng(1))
    for i, label in enumerate(CLASSES):
        for size in (36, 64):
            img = task.render(label, np.random.default_rng([5, i]), size, style)
            assert img.dtype == np.uint8 and img.shape == (size, size, 3)
            assert 40 < img.mean() < 250 and img.std() > 5  # not blank, not saturated
    out = tmp_path / "ph"
    df = write_phantoms(TASK, out, n=8, size=48)
    for rel in df.path:
        with Image.open(out / rel) as im:
            assert im.mode == "RGB" and im.size == (48, 48)


def test_render_rejects_unknown_label() -> None:
    with pytest.raises(ValueError, match="unknown class"):
        PHANTOMS.value(TASK).render("megakaryocyte", np.random.default_rng(0), 32)


def test_styles_differ_between_groups(tmp_path: Path) -> None:
    df = write_phantoms(TASK, tmp_path / "ph", n=16, seed=0, size=32, groups=4)
    per_group = df.groupby("group")[["stain_hue", "stain_intensity", "exposure", "focus_blur_um"]].nunique()
    assert (per_group == 1).all().all()  # one style per group
    styles = df.drop_duplicates("group")[["stain_hue", "stain_intensity", "exposure", "focus_blur_um"]]
    assert styles.nunique().min() == 4  # every group has its own values
    # the same image parameters look different under two group styles
    task = PHANTOMS.value(TASK)
    s0, s1 = (task.sample_style(np.random.default_rng([0, 7919, g])) for g in (0, 1))
    a = task.render("neutrophil", np.random.default_rng(9), 48, s0).astype(float)
    b = task.render("neutrophil", np.random.default_rng(9), 48, s1).astype(float)
    assert np.abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))).max() > 2.0


def test_montage(tmp_path: Path) -> None:
    out = montage(TASK, tmp_path / "m.png", per_class=2, size=32)
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.height >= 8 * 32


def test_draw_primitives_are_deterministic_and_bounded() -> None:
    shape = (40, 40)
    blob = d.polar_blob(shape, (20, 20), 8, aspect=0.7, angle=0.3, harmonics=[(3, 0.1, 0.5)])
    assert blob.dtype == np.float32 and blob.min() >= 0.0 and blob.max() <= 1.0
    assert 0.6 * np.pi * 8 * 8 * 0.7 < blob.sum() < 1.4 * np.pi * 8 * 8 * 0.7
    chain = d.capsule_chain(shape, [(5, 5), (20, 20), (35, 5)], [2, 1, 2])
    assert chain[20, 20] == 1.0 and chain[35, 35] == 0.0
    n1, n2 = d.smooth_noise(shape, 4.0, seed=1), d.smooth_noise(shape, 4.0, seed=1)
    assert np.array_equal(n1, n2) and abs(float(n1.mean())) < 1e-4
    g = d.granule_field(shape, [(10.0, 10.0)], 1.0, 1.5)
    assert abs(float(g.max()) - 1.0) < 0.1
    assert np.allclose(d.rotate_hue(np.array([1.0, 1.0, 1.0]), 0.7), 1.0, atol=1e-5)
