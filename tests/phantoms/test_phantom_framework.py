"""The phantom framework over every registered task: determinism, blur levels, groups, field truth files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from lablens.cli import app
from lablens.data.validate import load_dataset
from lablens.phantoms import PHANTOMS, group_plan, parse_blur_levels, write_phantoms
from lablens.phantoms.coco import rle_decode, rle_encode

TASKS = sorted(PHANTOMS)
FIELD_TASKS = sorted(name for name in PHANTOMS if PHANTOMS.value(name).fields is not None)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("task", TASKS)
def test_every_task_replays_and_validates_clean(task: str, tmp_path: Path) -> None:
    spec = PHANTOMS.value(task)
    n = 3 * len(spec.classes)
    df = write_phantoms(task, tmp_path / "a", n=n, seed=5, size=48)
    write_phantoms(task, tmp_path / "b", n=n, seed=5, size=48)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert set(df["label"]) == set(spec.classes)
    assert {"path", "label", "group", "index", "blur_level", "blur_sigma"} <= set(df.columns)
    manifest, report = load_dataset(tmp_path / "a")
    assert report.problems == []
    assert len(manifest) == n
    img = np.asarray(Image.open(tmp_path / "a" / df["path"][0]))
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8


@pytest.mark.parametrize("task", TASKS)
def test_one_label_per_group_is_honoured(task: str, tmp_path: Path) -> None:
    spec = PHANTOMS.value(task)
    df = write_phantoms(task, tmp_path / "p", n=2 * len(spec.classes) * 5, seed=0, size=32)
    labels_per_group = df.groupby("group")["label"].nunique()
    if spec.one_label_per_group:
        assert (labels_per_group == 1).all()
        assert (df.groupby("label")["group"].nunique() >= 5).all()  # enough groups per class for k-fold
    else:
        assert labels_per_group.max() > 1


def test_group_plan_one_label_per_group() -> None:
    classes = ("a", "b", "c")
    plan = group_plan(classes, 30, 9, one_label_per_group=True)
    assert Counter(lab for lab, _ in plan) == {"a": 10, "b": 10, "c": 10}
    by_group: dict[int, set[str]] = {}
    for lab, g in plan:
        by_group.setdefault(g, set()).add(lab)
    assert all(len(v) == 1 for v in by_group.values()) and len(by_group) == 9
    with pytest.raises(ValueError, match="at least one group per class"):
        group_plan(classes, 30, 2, one_label_per_group=True)


def test_parse_blur_levels() -> None:
    assert parse_blur_levels(None) == (0,)
    assert parse_blur_levels("0-4") == (0, 1, 2, 3, 4)
    assert parse_blur_levels("4,0,2,2") == (0, 2, 4)
    assert parse_blur_levels([1, 3]) == (1, 3)
    for bad in ("x", "0-99", "-1"):
        with pytest.raises(ValueError):
            parse_blur_levels(bad)


@pytest.mark.parametrize("task", TASKS)
def test_blur_levels_are_balanced_and_really_blur(task: str, tmp_path: Path) -> None:
    spec = PHANTOMS.value(task)
    n = 3 * len(spec.classes)
    df = write_phantoms(task, tmp_path / "b", n=n, seed=1, size=64, blur="0,4")
    per_class = df.groupby("label")["blur_level"].agg(lambda s: s.value_counts().to_dict())
    for counts in per_class:
        assert set(counts) <= {0, 4} and max(counts.values()) - min(counts.get(0, 0), counts.get(4, 0)) <= 1
    sharp = df[df.blur_level == 0]
    blurred = df[df.blur_level == 4]
    assert (blurred["blur_sigma"].min()) > 64 * 4 / 96 * 0.99
    assert sharp["blur_sigma"].max() < blurred["blur_sigma"].min()

    def sharpness(rel: str) -> float:
        grey = cv2.cvtColor(np.asarray(Image.open(tmp_path / "b" / rel)), cv2.COLOR_RGB2GRAY)
        return float(cv2.Laplacian(cv2.GaussianBlur(grey, (0, 0), 0.7), cv2.CV_64F).var())

    assert np.median([sharpness(p) for p in blurred.path]) < np.median([sharpness(p) for p in sharp.path])


def _naive_rle(mask: np.ndarray) -> list[int]:
    counts, current, run = [], False, 0
    for v in mask.ravel(order="F"):
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = bool(v), 1
    return [*counts, run]


def test_rle_matches_a_naive_encoder_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        h, w = rng.integers(1, 12, 2)
        mask = np.zeros((h, w), bool)
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        mask[y0 : y0 + rng.integers(1, 6), x0 : x0 + rng.integers(1, 6)] = rng.random() > 0.1
        mask &= rng.random((h, w)) > 0.3
        assert rle_encode(mask)["counts"] == _naive_rle(mask)
        assert np.array_equal(rle_decode(rle_encode(mask)), mask)
    full = np.ones((3, 4), bool)
    assert rle_encode(full)["counts"] == [0, 12]
    assert np.array_equal(rle_decode(rle_encode(full)), full)


@pytest.mark.parametrize("task", FIELD_TASKS)
def test_field_truth_is_exact(task: str, tmp_path: Path) -> None:
    spec = PHANTOMS.value(task)
    assert spec.fields is not None
    n = len(spec.fields.classes)
    out = tmp_path / "f"
    df = write_phantoms(task, out, n=n, seed=2, size=256, fields=True)
    cells = pd.read_csv(out / "cells.csv")
    doc = json.loads((out / "annotations.json").read_text())
    assert len(doc["images"]) == n and len(doc["annotations"]) == len(cells)
    assert [c["name"] for c in doc["categories"]] == list(spec.fields.instance_classes)
    assert df["n_objects"].sum() == len(cells)
    assert set(cells["label"]) <= set(spec.fields.instance_classes)
    for image in doc["images"]:
        anns = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
        masks = [rle_decode(a["segmentation"]) for a in anns]
        exclusive = np.zeros((image["height"], image["width"]), np.int32)
        for a, m in zip(anns, masks, strict=True):
            assert m.any(), f"empty mask in {image['file_name']}"
            x, y, w, h = a["bbox"]
            ys, xs = np.nonzero(m)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)  # tight box
            assert a["area"] == int(m.sum())
            if not a["attributes"]["may_overlap"]:
                exclusive += m
        assert exclusive.max() <= 1, f"non-overlapping objects overlap in {image['file_name']}"
    inside = (
        (cells.x0 <= cells.center_x + 0.5)
        & (cells.center_x - 0.5 <= cells.x1)
        & (cells.y0 <= cells.center_y + 0.5)
        & (cells.center_y - 0.5 <= cells.y1)
    )
    if "truncated" in cells.columns:
        inside |= cells["truncated"].astype(bool)
    assert inside.all(), cells[~inside].head()


def test_fields_refused_for_a_task_without_them(tmp_path: Path) -> None:
    plain = [name for name in PHANTOMS if PHANTOMS.value(name).fields is None]
    if not plain:
        pytest.skip("every task has fields")
    with pytest.raises(ValueError, match="no whole-field mode"):
        write_phantoms(plain[0], tmp_path / "x", n=4, fields=True)


def test_cli_phantom_list_write_and_refuse_overwrite(tmp_path: Path) -> None:
    runner = CliRunner()
    listing = runner.invoke(app, ["phantom", "list"])
    assert listing.exit_code == 0
    for name in PHANTOMS:
        assert name in listing.output
    out = tmp_path / "ph"
    ok = runner.invoke(
        app, ["phantom", "blood-cells", str(out), "--n", "16", "--size", "40", "--blur", "0-1"]
    )
    assert ok.exit_code == 0, ok.output
    assert (out / "manifest.csv").is_file() and "16 images" in ok.output
    before = _tree(out)
    again = runner.invoke(app, ["phantom", "blood-cells", str(out), "--n", "16"])
    assert again.exit_code == 1 and "refusing to write" in again.output
    assert _tree(out) == before
    bad = runner.invoke(app, ["phantom", "no-such-task", str(tmp_path / "y")])
    assert bad.exit_code == 1 and "unknown phantom task" in bad.output


def test_cli_montage_writes_a_palette_png_and_never_overwrites(tmp_path: Path) -> None:
    runner = CliRunner()
    png = tmp_path / "sheet.png"
    ok = runner.invoke(app, ["phantom", "blood-cells", str(png), "--montage", "--size", "32"])
    assert ok.exit_code == 0, ok.output
    with Image.open(png) as im:
        assert im.mode == "P" and im.width > 8 * 32 and im.height >= 8 * 32
    again = runner.invoke(app, ["phantom", "blood-cells", str(png), "--montage"])
    assert again.exit_code == 1 and "not overwritten" in again.output
