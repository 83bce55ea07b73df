from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lablens.data.splits import (
    LeakageError,
    SplitError,
    check_class_coverage,
    check_no_leakage,
    load_split,
    make_split,
    parse_protocol,
    save_split,
)


def grouped_data(n_groups: int = 60, per_group: tuple[int, int] = (1, 6), n_classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y, groups = [], []
    for g in range(n_groups):
        label = g % n_classes
        for _ in range(int(rng.integers(*per_group))):
            y.append(label)
            groups.append(f"patient{g}")
    return np.array(y), np.array(groups)


@pytest.mark.parametrize(
    ("spec", "fractions"),
    [
        ("8:1:1", (0.8, 0.1, 0.1)),
        ("9:1", (0.9, 0.1)),
        ("70:30", (0.7, 0.3)),
        ("0.6/0.2/0.2", (0.6, 0.2, 0.2)),
    ],
)
def test_parse_holdout(spec: str, fractions: tuple[float, ...]) -> None:
    p = parse_protocol(spec)
    assert p.kind == "holdout"
    np.testing.assert_allclose(p.fractions, fractions)


def test_parse_kfold_and_errors() -> None:
    assert parse_protocol("kfold:5").k == 5
    p = parse_protocol("repeated-kfold:5x3")
    assert (p.k, p.repeats) == (5, 3)
    for bad in ("kfold:1", "banana", "1:0", "0:1", "1:2:3:4"):
        with pytest.raises(SplitError):
            parse_protocol(bad)


@pytest.mark.parametrize("spec", ["8:1:1", "9:1", "70:30"])
def test_holdout_grouped_stratified_and_deterministic(spec: str) -> None:
    y, groups = grouped_data()
    s1 = make_split(y, groups, spec, seed=3)
    s2 = make_split(y, groups, spec, seed=3)
    s3 = make_split(y, groups, spec, seed=4)
    f1, f2, f3 = s1.folds[0], s2.folds[0], s3.folds[0]
    np.testing.assert_array_equal(f1.test, f2.test)
    assert not np.array_equal(f1.test, f3.test)
    # every row exactly once; no group on two sides
    all_rows = np.concatenate([f1.train, f1.val, f1.test])
    np.testing.assert_array_equal(np.sort(all_rows), np.arange(len(y)))
    for a, b in ((f1.train, f1.test), (f1.train, f1.val), (f1.val, f1.test)):
        assert not set(groups[a]) & set(groups[b])
    # every class reaches every partition, and the test share is near its target
    target = parse_protocol(spec).fractions[-1]
    assert abs(len(f1.test) / len(y) - target) < 0.06
    for part in (f1.train, f1.val, f1.test):
        assert set(y[part]) == set(y)


def test_val_fraction_for_two_part_protocol() -> None:
    y, groups = grouped_data(n_groups=200)
    f = make_split(y, groups, "70:30", val_fraction=0.2, seed=0).folds[0]
    assert abs(len(f.val) / (len(f.train) + len(f.val)) - 0.2) < 0.05


def test_kfold_every_row_tested_once() -> None:
    y, groups = grouped_data()
    split = make_split(y, groups, "kfold:5", seed=0)
    assert len(split.folds) == 5
    tested = np.concatenate([f.test for f in split.folds])
    np.testing.assert_array_equal(np.sort(tested), np.arange(len(y)))
    for f in split.folds:
        assert not set(groups[f.train]) & set(groups[f.test])


def test_repeated_kfold_differs_between_repeats() -> None:
    y, groups = grouped_data()
    split = make_split(y, groups, "repeated-kfold:3x2", seed=0)
    assert [f.name for f in split.folds][:4] == ["rep1-fold1", "rep1-fold2", "rep1-fold3", "rep2-fold1"]
    first = {tuple(f.test) for f in split.folds[:3]}
    second = {tuple(f.test) for f in split.folds[3:]}
    assert first != second


def test_kfold_needs_groups() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    groups = np.array(["a", "a", "b", "c", "d", "e"])
    with pytest.raises(SplitError, match="at least 5 groups"):
        make_split(y, groups, "kfold:5")


def test_leakage_check_catches_straddling_group() -> None:
    y, groups = grouped_data()
    split = make_split(y, groups, "8:1:1")
    f = split.folds[0]
    victim = f.test[0]
    partner = np.flatnonzero(groups == groups[f.train[0]])[0]
    groups = groups.copy()
    groups[victim] = groups[partner]
    with pytest.raises(LeakageError, match="straddle"):
        check_no_leakage(split, groups)


def test_save_load_roundtrip_and_refusal(tmp_path: Path) -> None:
    y, groups = grouped_data()
    ids = [f"img{i}.png" for i in range(len(y))]
    split = make_split(y, groups, "8:1:1", seed=1)
    path = tmp_path / "split.json"
    save_split(split, ids, groups, path)
    loaded, notes = load_split(path, ids, groups)
    np.testing.assert_array_equal(loaded.folds[0].test, split.folds[0].test)
    assert notes == []
    # a tampered file moving one image of a test group (with others still in test) into train is refused
    doc = json.loads(path.read_text())
    test_ids = doc["folds"][0]["test"]
    sizes = Counter(doc["groups"][i] for i in test_ids)
    group = next(g for g, n in sizes.items() if n >= 2)
    moved = next(i for i in test_ids if doc["groups"][i] == group)
    test_ids.remove(moved)
    doc["folds"][0]["train"].append(moved)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(LeakageError):
        load_split(bad, ids, groups)


def test_load_split_checks_recorded_groups_too(tmp_path: Path) -> None:
    """A saved split whose *own* group record straddles is refused even if the manifest lost its groups."""
    y, groups = grouped_data()
    ids = [f"img{i}.png" for i in range(len(y))]
    split = make_split(y, groups, "8:1:1")
    path = tmp_path / "split.json"
    save_split(split, ids, groups, path)
    doc = json.loads(path.read_text())
    a, b = doc["folds"][0]["train"][0], doc["folds"][0]["test"][0]
    doc["groups"][b] = doc["groups"][a]
    path.write_text(json.dumps(doc))
    with pytest.raises(LeakageError):
        load_split(path, ids, np.array(ids))  # manifest now says: every image its own group


def test_load_split_rejects_foreign_file(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text("{}")
    with pytest.raises(SplitError, match="not a lablens split"):
        load_split(p, ["a"], np.array(["a"]))


def test_few_large_groups_still_fill_every_partition() -> None:
    y = np.arange(160) % 8
    groups = np.array([f"P{i * 6 // 160}" for i in range(160)])  # 6 mixed groups for 3 partitions
    fold = make_split(y, groups, "8:1:1").folds[0]
    assert len(fold.train) and len(fold.val) and len(fold.test)
    sides = [set(groups[fold.train]), set(groups[fold.val]), set(groups[fold.test])]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])


def test_fewer_groups_than_partitions_is_a_clear_error() -> None:
    y = np.arange(20) % 2
    groups = np.array(["A"] * 10 + ["B"] * 10)
    with pytest.raises(SplitError, match="at least one group per partition"):
        make_split(y, groups, "8:1:1")


def _with_rare_class(n_rare_groups: int) -> tuple[np.ndarray, np.ndarray]:
    y, groups = grouped_data(n_groups=60, n_classes=3)
    rare_y = np.full(2 * n_rare_groups, 3)
    rare_g = np.array([f"rare{i // 2}" for i in range(2 * n_rare_groups)])
    return np.concatenate([y, rare_y]), np.concatenate([groups, rare_g])


def test_a_class_missing_from_a_partition_is_refused_by_name() -> None:
    y, groups = _with_rare_class(2)  # two slides of the rare class cannot reach three partitions
    names = ["a", "b", "c", "blast"]
    with pytest.raises(
        SplitError, match=r"class 'blast' \(2 group\(s\)\) has no image in the (val|test) partition"
    ):
        make_split(y, groups, "8:1:1", classes=names)
    with pytest.raises(SplitError, match=r"'blast' has 2"):
        make_split(y, groups, "kfold:3", classes=names)


def test_not_estimable_keeps_the_class_and_says_where_it_is_missing() -> None:
    y, groups = _with_rare_class(2)
    names = ["a", "b", "c", "blast"]
    split = make_split(y, groups, "8:1:1", classes=names, missing_classes="not-estimable")
    notes = check_class_coverage(split, y, groups, names, "not-estimable")
    assert notes and all("'blast' (2 group(s))" in n and "not estimable" in n for n in notes)
    assert 3 in y[split.folds[0].train]


def test_a_class_missing_from_training_is_refused_under_every_policy() -> None:
    y, groups = _with_rare_class(1)
    split = make_split(y, groups, "8:1:1", missing_classes="not-estimable")
    fold = split.folds[0]
    rare = np.flatnonzero(y == 3)
    moved = type(fold)(
        fold.name, np.setdiff1d(fold.train, rare), fold.val, np.union1d(np.setdiff1d(fold.test, rare), rare)
    )
    split.folds[0] = type(fold)(fold.name, moved.train, np.setdiff1d(fold.val, rare), moved.test)
    with pytest.raises(SplitError, match="has no image in the train partition"):
        check_class_coverage(split, y, groups, ["a", "b", "c", "blast"], "not-estimable")
