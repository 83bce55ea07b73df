"""Whole blood-smear fields: the ``--fields`` mode of the blood-cells phantom task."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lablens.phantoms import PHANTOMS, Instance, write_phantoms
from lablens.phantoms import blood_smear as bs
from lablens.phantoms.write import FIELD_SALT, STYLE_SALT

from conftest import shared_data

TASK = PHANTOMS.value("blood-cells")
WBC = ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil")

SIZE = 256
Field = tuple[str, np.ndarray, list[Instance], dict[str, Any]]


def _render(label: str, k: int, size: int | None = None, seed: int = 0) -> Field:
    style = TASK.sample_style(np.random.default_rng([seed, STYLE_SALT, k]))
    img, instances, truth = TASK.render_field(
        label, np.random.default_rng([seed, FIELD_SALT, k]), size, style
    )
    return label, img, instances, truth


@pytest.fixture(scope="module")
def fields() -> list[Field]:
    """One field per label at 256 px (half the default size), each under its own group style."""
    return [_render(label, k, SIZE) for k, label in enumerate(bs.CLASSES)]


@pytest.fixture(scope="module")
def boxes(fields: list[Field]) -> list[list[tuple[int, int, int, int]]]:
    """``Instance.box()`` of every object of every field (computed once)."""
    return [[inst.box() for inst in instances] for _, _, instances, _ in fields]


@pytest.fixture(scope="module")
def sampled() -> dict[str, list[dict[str, Any]]]:
    """Field parameters only (no drawing), six per label: cheap enough for statistics."""
    out: dict[str, list[dict[str, Any]]] = {}
    for label in bs.CLASSES:
        out[label] = []
        for k in range(6):
            style = TASK.sample_style(np.random.default_rng([1, STYLE_SALT, k]))
            out[label].append(bs.FIELDS.sampler(label, np.random.default_rng([1, FIELD_SALT, k]), style))
    return out


def test_registered_as_the_blood_cells_field_mode() -> None:
    spec = TASK.fields
    assert spec is bs.FIELDS
    assert spec.classes == ("normal", "neutrophilia", "lymphocytosis", "eosinophilia", "left_shift")
    assert spec.instance_classes == (*WBC, "platelet", "rbc")
    assert spec.default_size == 512 and spec.one_label_per_group
    assert set(bs.DIFFERENTIALS) == set(spec.classes) == set(bs.BAND_FRACTION)
    for mean in bs.DIFFERENTIALS.values():
        assert set(mean) <= set(WBC) and abs(sum(mean.values()) - 1.0) < 1e-9


def test_fields_and_instances_are_well_formed(fields: list[Field]) -> None:
    for _, img, instances, _ in fields:
        assert img.dtype == np.uint8 and img.shape == (SIZE, SIZE, 3)
        assert 60 < img.mean() < 250 and img.std() > 8
        for inst in instances:
            assert inst.label in TASK.fields.instance_classes  # type: ignore[union-attr]
            assert inst.mask.dtype == bool and inst.mask.shape == (SIZE, SIZE) and inst.mask.any()
            assert inst.may_overlap == (inst.label == "rbc")
            assert set(inst.attrs) == {"subtype", "truncated", "visible_frac"}
            assert inst.attrs["visible_frac"] >= bs.MIN_VISIBLE
            assert inst.attrs["truncated"] or inst.attrs["visible_frac"] == 1.0


def test_every_box_contains_its_centre(
    fields: list[Field], boxes: list[list[tuple[int, int, int, int]]]
) -> None:
    n_whole = n_cut = 0
    for (_, _, instances, _), field_boxes in zip(fields, boxes, strict=True):
        for inst, (x0, y0, x1, y1) in zip(instances, field_boxes, strict=True):
            cx, cy = inst.center
            if inst.attrs["truncated"]:
                # cut by the field edge: the box runs to the image border
                assert x0 == 0 or y0 == 0 or x1 == SIZE or y1 == SIZE, inst
                n_cut += 1
            else:
                assert x0 <= cx <= x1 and y0 <= cy <= y1, inst
                assert inst.mask[round(cy), round(cx)], inst  # the centre is on the object
                n_whole += 1
    assert n_whole > 500 and n_cut > 50


def test_white_cell_masks_never_overlap(fields: list[Field]) -> None:
    for _, _, instances, _ in fields:
        wbc = [i.mask for i in instances if i.label in WBC]
        assert 2 <= len(wbc) <= 6
        assert (np.sum(wbc, axis=0) <= 1).all()
        # nor do platelets overlap white cells or each other (all may_overlap=False objects)
        solid = [i.mask for i in instances if not i.may_overlap]
        assert (np.sum(solid, axis=0) <= 1).all()
        # red cells may: some overlap each other in every field
        rbc = np.sum([i.mask for i in instances if i.label == "rbc"], axis=0)
        assert (rbc >= 2).any()


def test_truth_counts_equal_instances(fields: list[Field]) -> None:
    for label, _, instances, truth in fields:
        labels = pd.Series([i.label for i in instances], dtype=object)
        counts = labels.value_counts()
        assert truth["n_rbc"] == counts.get("rbc", 0) > 50
        assert truth["n_platelets"] == counts.get("platelet", 0) >= 1
        assert truth["n_platelet_fragments"] >= truth["n_platelets"]
        assert truth["n_wbc"] == int(labels.isin(WBC).sum())
        for c in WBC:
            assert truth[f"n_{c}"] == counts.get(c, 0)
            assert 0.0 <= truth[f"frac_{c}"] <= 1.0
        assert abs(sum(truth[f"frac_{c}"] for c in WBC) - 1.0) < 1e-3
        for c in WBC:  # absent from the condition: absent from the field
            if c not in bs.DIFFERENTIALS[label]:
                assert truth[f"frac_{c}"] == 0.0 and truth[f"n_{c}"] == 0
        assert 80.0 <= truth["field_um"] <= 120.0
        assert 0.0 < truth["blur_sigma"] < 3.0


def test_red_cells_fill_the_monolayer(fields: list[Field], sampled: dict[str, list[dict[str, Any]]]) -> None:
    for _, _, instances, _ in fields:
        covered = np.any([i.mask for i in instances if i.label == "rbc"], axis=0)
        assert 0.4 < covered.mean() < 0.85
    for label in ("normal", "left_shift"):
        for params in sampled[label]:
            rbc = params["rbc"]
            c, r = np.asarray(rbc["centers"]), np.asarray(rbc["radii"])
            gap = np.hypot(*(c[:, None] - c[None]).transpose(2, 0, 1)) / (r[:, None] + r[None])
            np.fill_diagonal(gap, np.inf)
            assert (gap.min(axis=1) <= 1.05).mean() > 0.7  # mostly touching (or overlapping) a neighbour
            assert (gap.min(axis=1) < 0.95).mean() > 0.1  # some overlap


def test_condition_sets_the_differential(sampled: dict[str, list[dict[str, Any]]]) -> None:
    mean = {lab: {c: np.mean([p["fracs"][c] for p in ps]) for c in WBC} for lab, ps in sampled.items()}
    assert 0.5 < mean["normal"]["neutrophil"] < 0.7 and 0.2 < mean["normal"]["lymphocyte"] < 0.4
    assert mean["neutrophilia"]["neutrophil"] > 0.75
    assert mean["lymphocytosis"]["lymphocyte"] > 0.5 > mean["lymphocytosis"]["neutrophil"]
    assert mean["eosinophilia"]["eosinophil"] > 0.15 > mean["normal"]["eosinophil"]
    assert mean["left_shift"]["ig"] > 0.08
    for lab in ("normal", "lymphocytosis", "eosinophilia"):
        assert mean[lab]["ig"] == 0.0 and mean[lab]["erythroblast"] == 0.0
    # left shift: immature granulocytes and band forms present
    cells = [c for p in sampled["left_shift"] for c in p["wbcs"]]
    assert any(c["kind"] == "ig" for c in cells)
    bands = [c["subtype"] == "band" for c in cells if c["kind"] == "neutrophil"]
    assert sum(bands) >= 2
    normal_neutrophils = [c for p in sampled["normal"] for c in p["wbcs"] if c["kind"] == "neutrophil"]
    assert np.mean([c["subtype"] == "band" for c in normal_neutrophils]) < np.mean(bands)


def test_renders_512_px_well_under_a_second() -> None:
    style = TASK.sample_style(np.random.default_rng(3))
    best = np.inf
    for k in range(2):
        t0 = time.perf_counter()
        img, _, _ = TASK.render_field("left_shift", np.random.default_rng(k), None, style)
        best = min(best, time.perf_counter() - t0)
    assert img.shape == (512, 512, 3)
    assert best < 0.75, f"a 512 px field took {best:.2f} s"


def test_deterministic() -> None:
    a, b = _render("eosinophilia", 7, 128), _render("eosinophilia", 7, 128)
    assert np.array_equal(a[1], b[1]) and a[3] == b[3]
    assert [i.label for i in a[2]] == [i.label for i in b[2]]
    assert all(np.array_equal(i.mask, j.mask) and i.attrs == j.attrs for i, j in zip(a[2], b[2], strict=True))
    other = _render("eosinophilia", 7, 128, seed=1)
    assert not np.array_equal(a[1], other[1])
    # the geometry is in µm: the same field at another size holds the same objects
    big = _render("eosinophilia", 7, 192)
    assert [i.label for i in big[2]] == [i.label for i in a[2]]
    assert {k: v for k, v in big[3].items() if k != "blur_sigma"} == {
        k: v for k, v in a[3].items() if k != "blur_sigma"
    }


def test_written_fields_replay_byte_for_byte(tmp_path: Path) -> None:
    df = write_phantoms("blood-cells", tmp_path / "a", n=5, seed=2, size=96, fields=True)
    write_phantoms("blood-cells", tmp_path / "b", n=5, seed=2, size=96, fields=True)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 5 + 3  # images, manifest.csv, cells.csv, annotations.json
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert sorted(df.label) == sorted(bs.CLASSES) and df.group.nunique() == 5
    cells = pd.read_csv(tmp_path / "a" / "cells.csv")
    assert len(cells) == df.n_objects.sum()
    per_field = cells.groupby("path").label.value_counts().unstack(fill_value=0)
    for _, row in df.iterrows():
        assert per_field.loc[row.path, "rbc"] == row.n_rbc
        assert per_field.loc[row.path].reindex(list(WBC), fill_value=0).sum() == row.n_wbc


def test_extra_blur_is_applied() -> None:
    style = TASK.sample_style(np.random.default_rng(4))
    sharp, _, t0 = TASK.render_field("normal", np.random.default_rng(5), 128, style)
    soft, _, t1 = TASK.render_field("normal", np.random.default_rng(5), 128, style, extra_blur_frac=4 / 96)
    assert t1["blur_sigma"] > t0["blur_sigma"] + 4

    def detail(img: np.ndarray) -> float:  # edge contrast on 4x4 block means (sensor noise averaged out)
        blocks = img.astype(float).reshape(32, 4, 32, 4, 3).mean(axis=(1, 3))
        return float(np.abs(np.diff(blocks, axis=1)).mean())

    assert detail(soft) < 0.7 * detail(sharp)


def test_rejects_unknown_field_label() -> None:
    with pytest.raises(ValueError, match="unknown class"):
        TASK.render_field("anaemia", np.random.default_rng(0), 64)
    with pytest.raises(ValueError, match="unknown blood-smear field class"):
        bs.sample_params("anaemia", np.random.default_rng(0), TASK.sample_style(np.random.default_rng(0)))


@pytest.mark.shared_data
def test_cell_scale_matches_bccd(fields: list[Field], boxes: list[list[tuple[int, int, int, int]]]) -> None:
    """White cells are about twice a red cell across, as in the BCCD fields (boxes of whole cells)."""
    root = shared_data("bccd")
    sides: dict[str, list[float]] = {"RBC": [], "WBC": []}
    for xml in sorted((root / "Annotations").glob("*.xml")):
        for obj in ET.parse(xml).getroot().iter("object"):
            name, box = obj.findtext("name"), obj.find("bndbox")
            if name in sides and box is not None and obj.findtext("truncated") == "0":
                x0, y0, x1, y1 = (float(box.findtext(k) or 0) for k in ("xmin", "ymin", "xmax", "ymax"))
                sides[name].append((x1 - x0 + y1 - y0) / 2)
    bccd = np.median(sides["WBC"]) / np.median(sides["RBC"])
    ours: dict[str, list[float]] = {"rbc": [], "wbc": []}
    for (_, _, instances, _), field_boxes in zip(fields, boxes, strict=True):
        for inst, (x0, y0, x1, y1) in zip(instances, field_boxes, strict=True):
            if not inst.attrs["truncated"] and inst.label != "platelet":
                ours["rbc" if inst.label == "rbc" else "wbc"].append((x1 - x0 + y1 - y0) / 2)
    ratio = np.median(ours["wbc"]) / np.median(ours["rbc"])
    assert 1.5 < bccd < 2.3
    assert abs(ratio / bccd - 1.0) < 0.2, (ratio, bccd)


def test_vectorised_packing_equals_the_one_by_one_dart_throw() -> None:
    rng = np.random.default_rng(0)
    points, radii = rng.uniform(-20, 20, (400, 2)), rng.uniform(1.5, 2.5, 400)
    kept: list[int] = []
    for i in range(len(points)):
        if all(np.hypot(*(points[i] - points[j])) >= 0.8 * (radii[i] + radii[j]) for j in kept):
            kept.append(i)
    assert np.flatnonzero(bs._greedy_packing(points, radii, 0.8)).tolist() == kept
