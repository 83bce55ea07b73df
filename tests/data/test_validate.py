"""Ingestion: a corpus of bad files next to good ones; each bad file is named with its reason and left out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lablens.data.validate import DataError, load_dataset

from conftest import write_shape_folder
from corpus import BAD_FILES, build_bad_corpus


def test_bad_corpus_each_file_named_with_reason(tmp_path: Path) -> None:
    root = build_bad_corpus(tmp_path / "corpus")
    manifest, report = load_dataset(root, min_groups_per_class=3)
    found = {p.path: p for p in report.problems}
    for rel, kind in BAD_FILES.items():
        assert rel in found, f"{rel} not reported"
        assert found[rel].kind == kind, (rel, found[rel])
        assert found[rel].reason
    assert found["ring/ring_000.png"].kind == "label_conflict"
    bad_name = [p for p in report.problems if p.kind == "bad_name"]
    assert len(bad_name) == 1 and "UTF-8" in bad_name[0].reason
    assert found["lonely/"].kind == "class_too_small"
    # nothing bad got in; every good file did
    assert set(manifest.classes) == {"disc", "ring", "square"}
    ids = set(manifest.ids)
    assert not ids & set(BAD_FILES)
    for good in (
        "disc/grey16.tif",
        "ring/rgba.png",
        "ring/palette.png",
        "square/cmyk.jpg",
        "square/bitmap.bmp",
        "square/four16.tiff",
        "square/square_000.png",
    ):
        assert good in ids
    assert report.n_usable == len(manifest)
    assert report.n_found == report.n_usable + report.n_skipped
    assert report.counts_by_kind()["label_conflict"] == 3


def test_no_readable_image_raises(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_text("nope")
    with pytest.raises(DataError, match="no usable image"):
        load_dataset(tmp_path)


def test_folder_without_class_dirs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(tmp_path)


def test_csv_manifest_with_groups_reader_and_meta(tmp_path: Path) -> None:
    root = write_shape_folder(tmp_path / "imgs", per_class=4)
    rows = []
    for label in ("disc", "ring", "square"):
        for i in range(4):
            rows.append(
                {
                    "path": f"{label}/{label}_{i:03d}.png",
                    "label": label,
                    "patient": f"P{i % 2}",
                    "second_reader": label if i else "ring",
                    "stain_batch": "B7",
                }
            )
    rows.append(
        {"path": "disc/missing.png", "label": "disc", "patient": "P9", "second_reader": "", "stain_batch": ""}
    )
    rows.append(
        {"path": "disc/disc_000.png", "label": "", "patient": "P9", "second_reader": "", "stain_batch": ""}
    )
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    manifest, report = load_dataset(
        root / "labels.csv", group_column="patient", reader_column="second_reader"
    )
    assert len(manifest) == 12
    assert set(manifest.groups) == {"P0", "P1"}
    assert manifest.reader is not None and list(manifest.reader).count("ring") == 4 + 2
    assert "stain_batch" in manifest.table.columns
    kinds = {p.kind for p in report.problems}
    assert kinds == {"missing_file", "missing_label"}


def test_folder_with_manifest_csv_uses_it(tmp_path: Path) -> None:
    root = write_shape_folder(tmp_path / "d", per_class=3)
    pd.DataFrame(
        [
            {"path": f"{c}/{c}_{i:03d}.png", "label": c, "group": f"G{i}"}
            for c in ("disc", "ring", "square")
            for i in range(3)
        ]
    ).to_csv(root / "manifest.csv", index=False)
    manifest, report = load_dataset(root)
    assert report.layout == "csv"
    assert sorted(set(manifest.groups)) == ["G0", "G1", "G2"]


def test_group_regex(tmp_path: Path) -> None:
    root = write_shape_folder(tmp_path / "d", per_class=4)
    manifest, report = load_dataset(root, group_regex=r"_(\d{2})\d\.png$")
    assert set(manifest.groups) == {"00"}
    assert "regex" in report.group_source


def test_known_classes_filters_unknown_labels(tmp_path: Path) -> None:
    root = write_shape_folder(tmp_path / "d", per_class=2)
    manifest, report = load_dataset(root, known_classes=["disc", "ring", "triangle"])
    assert manifest.classes == ["disc", "ring", "triangle"]
    assert {p.kind for p in report.problems} == {"unknown_label"}


def test_manifest_hash_changes_with_labels(tmp_path: Path) -> None:
    root = write_shape_folder(tmp_path / "d", per_class=3)
    m1, _ = load_dataset(root)
    m2, _ = load_dataset(root)
    assert m1.content_hash() == m2.content_hash()
    m2.table.loc[0, "label"] = "ring"
    assert m1.content_hash() != m2.content_hash()
