"""Grouped, stratified splits: a pure function of (labels, groups, protocol, seed) → index sets.

One patient/specimen/slide never falls on two sides. That is enforced where a split is made
(:func:`make_split`) and re-checked whenever a saved split is loaded (:func:`load_split`), which
refuses a file whose groups straddle partitions.

Protocol grammar (``SplitConfig.protocol``):
    ``8:1:1`` or ``0.8/0.1/0.1``  train:val:test hold-out (any ratios);
    ``9:1`` or ``70:30``          train:test hold-out, validation carved from train by ``val_fraction``;
    ``kfold:5``                   stratified grouped 5-fold CV (validation carved from each training part);
    ``repeated-kfold:5x3``        the same, repeated 3 times with different shuffles.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from lablens import jsonio
from lablens.errors import LablensError

SPLIT_SCHEMA = "lablens.split/1"


class SplitError(LablensError, ValueError):
    """A split cannot be made or a saved split cannot be used."""


class LeakageError(SplitError):
    """A group (patient/specimen/slide) appears on two sides of a split."""


@dataclass(frozen=True)
class Protocol:
    """Parsed protocol: ``kind`` is ``holdout`` or ``kfold``."""

    kind: str
    fractions: tuple[float, ...] = ()  # holdout: (train, val, test) or (train, test)
    k: int = 0
    repeats: int = 1

    @property
    def min_groups_per_class(self) -> int:
        """Groups a class needs to reach train, validation and test of every fold."""
        return 3 if self.kind == "holdout" else max(self.k, 3)


@dataclass
class Fold:
    """Row positions of one train/val/test assignment."""

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


@dataclass
class Split:
    protocol: str
    seed: int
    val_fraction: float
    folds: list[Fold]


def parse_protocol(spec: str) -> Protocol:
    """Parse a protocol string (see module docstring)."""
    s = spec.strip().lower()
    m = re.fullmatch(r"kfold:(\d+)", s)
    if m:
        k = int(m.group(1))
        if k < 2:
            raise SplitError("k-fold needs k ≥ 2")
        return Protocol("kfold", k=k)
    m = re.fullmatch(r"repeated-kfold:(\d+)x(\d+)", s)
    if m:
        k, r = int(m.group(1)), int(m.group(2))
        if k < 2 or r < 1:
            raise SplitError("repeated k-fold needs k ≥ 2 and repeats ≥ 1")
        return Protocol("kfold", k=k, repeats=r)
    parts = re.split(r"[:/]", s)
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise SplitError(
            f"cannot read split protocol {spec!r}: use e.g. 8:1:1, 9:1, 70:30, kfold:5 or repeated-kfold:5x3"
        ) from None
    if len(values) not in (2, 3) or any(v < 0 for v in values) or values[0] <= 0 or values[-1] <= 0:
        raise SplitError(
            f"hold-out protocol {spec!r} needs 2 (train:test) or 3 (train:val:test) positive parts"
        )
    total = sum(values)
    return Protocol("holdout", fractions=tuple(v / total for v in values))


def allocate_groups(
    y: np.ndarray, groups: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator
) -> np.ndarray:
    """Assign every sample to a partition so that groups stay whole and class shares follow ``fractions``.

    Written here because scikit-learn offers grouped stratification only as equal k folds
    (StratifiedGroupKFold), not as arbitrary ratios such as 70:30 or 8:1:1. Greedy: groups, largest
    first (random order among equals), go to the partition where they most reduce the squared gap
    between each class's share and its target fraction.

    Returns:
        Partition index per sample.
    """
    uniq, g_idx = np.unique(groups.astype(str), return_inverse=True)
    n_classes = int(y.max()) + 1 if len(y) else 0
    counts = np.zeros((len(uniq), n_classes))
    np.add.at(counts, (g_idx, y), 1.0)
    totals = np.maximum(counts.sum(0), 1.0)
    frac = np.asarray(fractions, dtype=float)
    order = rng.permutation(len(uniq))
    order = order[np.argsort(-counts[order].sum(1), kind="stable")]
    current = np.zeros((len(frac), n_classes))
    sizes = np.zeros(len(frac))
    target_sizes = frac * len(y)
    assign = np.empty(len(uniq), dtype=np.int64)
    for g in order:
        v = counts[g] / totals
        share = current / totals
        before = ((share - frac[:, None]) ** 2).sum(1)
        after = ((share + v - frac[:, None]) ** 2).sum(1)
        cost = after - before
        deficit = target_sizes - sizes
        # lowest cost; ties broken by the largest remaining deficit, then the lowest index
        best = min(range(len(frac)), key=lambda p: (round(cost[p], 12), -deficit[p], p))
        assign[g] = best
        current[best] += counts[g]
        sizes[best] += counts[g].sum()
    _fill_empty_partitions(assign, counts.sum(1), frac)
    _cover_classes(assign, counts, frac)
    return assign[g_idx]


def _cover_classes(assign: np.ndarray, counts: np.ndarray, frac: np.ndarray) -> None:
    """Give every partition with a positive fraction at least one group of each class that has groups to spare.

    A class with at least as many groups as partitions can reach all of them; the greedy fill above does not
    promise it (a class of 5 groups in an 8:1:1 split often gets no validation group). A group of the class
    moves from a partition holding several of the class's groups, the smallest such group whose move leaves
    every class its coverage there. In place; a class with too few groups is left as it is (the coverage
    check names it).
    """
    wanted = [p for p in range(len(frac)) if frac[p] > 0]
    for _ in range(len(assign)):
        moved = False
        for c in range(counts.shape[1]):
            has = counts[:, c] > 0
            for p in wanted:
                if (has & (assign == p)).any() or has.sum() < len(wanted):
                    continue
                best = None
                for g in np.flatnonzero(has):
                    donor = assign[g]
                    in_donor = (assign == donor) & (counts > 0).T  # (classes, groups) held by the donor
                    left = in_donor.sum(1) - (counts[g] > 0)
                    if (left[counts[g] > 0] < 1).any():
                        continue  # the move would leave the donor without a class it covers
                    if best is None or counts[g].sum() < counts[best].sum():
                        best = g
                if best is not None:
                    assign[best] = p
                    moved = True
        if not moved:
            return


def _fill_empty_partitions(assign: np.ndarray, group_sizes: np.ndarray, frac: np.ndarray) -> None:
    """Give every partition with a positive fraction at least one group (few large groups can starve one).

    The smallest group of the partition holding the most groups moves over; in place.
    """
    wanted = [p for p in range(len(frac)) if frac[p] > 0]
    if len(group_sizes) < len(wanted):
        raise SplitError(
            f"only {len(group_sizes)} group(s) (patients/slides) for {len(wanted)} partitions; a grouped split "
            "needs at least one group per partition: add data, or use fewer partitions (e.g. 9:1)"
        )
    for p in wanted:
        if (assign == p).any():
            continue
        holders = np.bincount(assign, minlength=len(frac))
        donor = int(np.argmax(holders))
        candidates = np.flatnonzero(assign == donor)
        assign[candidates[np.argmin(group_sizes[candidates])]] = p


def make_split(
    y: np.ndarray,
    groups: np.ndarray,
    protocol: str,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    missing_classes: str = "refuse",
) -> Split:
    """Make a deterministic grouped, stratified split of ``len(y)`` samples.

    Every class must reach the training, validation and test side of every fold; otherwise the split is
    refused (:class:`SplitError` naming the class and its number of groups), or, with
    ``missing_classes="not-estimable"``, kept so that the class's test metrics are reported as not estimable.
    ``classes`` names the class indices in messages.
    """
    proto = parse_protocol(protocol)
    y = np.asarray(y, dtype=np.int64)
    groups = np.asarray(groups).astype(str)
    names = (
        list(classes) if classes is not None else [str(c) for c in range(int(y.max()) + 1 if len(y) else 0)]
    )
    folds: list[Fold] = []
    if proto.kind == "holdout":
        rng = np.random.default_rng([seed, 0])
        if len(proto.fractions) == 3:
            part = allocate_groups(y, groups, proto.fractions, rng)
            train, val, test = (np.flatnonzero(part == i) for i in range(3))
        else:
            part = allocate_groups(y, groups, proto.fractions, rng)
            rest, test = np.flatnonzero(part == 0), np.flatnonzero(part == 1)
            train, val = _carve_val(y, groups, rest, val_fraction, np.random.default_rng([seed, 1]))
        folds.append(Fold("holdout", train, val, test))
    else:
        small = {c: n for c, n in _groups_per_class(y, groups).items() if n < proto.k}
        if small and missing_classes != "not-estimable":
            raise SplitError(
                f"{proto.k}-fold needs at least {proto.k} groups in every class: "
                + ", ".join(f"{names[c]!r} has {n}" for c, n in small.items())
                + MISSING_HELP
            )
        for r in range(proto.repeats):
            cv = StratifiedGroupKFold(n_splits=proto.k, shuffle=True, random_state=seed + 1000 * r)
            for f, (rest, test) in enumerate(cv.split(np.zeros(len(y)), y, groups)):
                rng = np.random.default_rng([seed, r, f])
                train, val = _carve_val(y, groups, np.sort(rest), val_fraction, rng)
                name = f"fold{f + 1}" if proto.repeats == 1 else f"rep{r + 1}-fold{f + 1}"
                folds.append(Fold(name, train, val, np.sort(test)))
    split = Split(protocol=protocol, seed=seed, val_fraction=val_fraction, folds=folds)
    check_no_leakage(split, groups)
    check_class_coverage(split, y, groups, names, missing_classes)
    return split


MISSING_CLASS_POLICIES = ("refuse", "drop", "not-estimable")
MISSING_HELP = (
    "; add groups (patients/slides) of that class, use fewer partitions or folds, leave the class out "
    "(split.missing_classes: drop), or keep it with its metrics not estimable (split.missing_classes: not-estimable)"
)


def _groups_per_class(y: np.ndarray, groups: np.ndarray) -> dict[int, int]:
    return {int(c): int(np.unique(groups[y == c]).size) for c in np.unique(y)}


def missing_from_partitions(split: Split, y: np.ndarray) -> list[tuple[str, str, int]]:
    """``(fold, side, class index)`` for every class present in the data but absent from a side of a fold."""
    present = np.unique(y)
    out = []
    for fold in split.folds:
        for side in ("train", "val", "test"):
            rows = getattr(fold, side)
            for c in np.setdiff1d(present, y[rows]):
                out.append((fold.name, side, int(c)))
    return out


def check_class_coverage(
    split: Split, y: np.ndarray, groups: np.ndarray, classes: Sequence[str], policy: str = "refuse"
) -> list[str]:
    """Refuse a split that leaves a class out of a partition, or (``not-estimable``) return one note per gap.

    A class missing from training is refused under every policy: no model can learn it.
    """
    if policy not in MISSING_CLASS_POLICIES:
        raise SplitError(
            f"split.missing_classes {policy!r}: choose one of {', '.join(MISSING_CLASS_POLICIES)}"
        )
    y = np.asarray(y, dtype=np.int64)
    n_groups = _groups_per_class(y, np.asarray(groups).astype(str))
    gaps = missing_from_partitions(split, y)
    untrainable = [g for g in gaps if g[1] == "train"]
    if untrainable or (gaps and policy != "not-estimable"):
        fold, side, c = (untrainable or gaps)[0]
        more = f" (and {len(gaps) - 1} more gap(s))" if len(gaps) > 1 else ""
        where = f"{fold}: " if len(split.folds) > 1 else ""
        raise SplitError(
            f"{where}class {classes[c]!r} ({n_groups[c]} group(s)) has no image in the {side} partition{more}"
            + ("" if side == "train" else MISSING_HELP)
        )
    return [
        f"{fold}: class {classes[c]!r} ({n_groups[c]} group(s)) has no {side} image; its {side} metrics are "
        "not estimable"
        for fold, side, c in gaps
    ]


def _carve_val(
    y: np.ndarray, groups: np.ndarray, rows: np.ndarray, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    part = allocate_groups(y[rows], groups[rows], (1.0 - val_fraction, val_fraction), rng)
    return rows[part == 0], rows[part == 1]


def check_no_leakage(split: Split, groups: np.ndarray) -> None:
    """Raise :class:`LeakageError` if any row or group appears in two partitions of a fold."""
    groups = np.asarray(groups).astype(str)
    for fold in split.folds:
        sides = {"train": fold.train, "val": fold.val, "test": fold.test}
        names = list(sides)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                rows = np.intersect1d(sides[a], sides[b])
                if rows.size:
                    raise LeakageError(f"{fold.name}: {rows.size} image(s) are in both {a} and {b}")
                shared = np.intersect1d(groups[sides[a]], groups[sides[b]])
                if shared.size:
                    shown = ", ".join(map(str, shared[:5])) + (" …" if shared.size > 5 else "")
                    raise LeakageError(
                        f"{fold.name}: {shared.size} group(s) straddle {a} and {b} ({shown}); one patient/"
                        f"specimen/slide must stay on one side"
                    )


def split_to_dict(split: Split, ids: list[str], groups: np.ndarray) -> dict:
    """JSON-ready form naming images by id (stable across runs), with each image's group."""
    ids_arr = np.asarray(ids, dtype=object)
    groups = np.asarray(groups).astype(str)
    used = np.unique(np.concatenate([np.concatenate([f.train, f.val, f.test]) for f in split.folds]))
    return {
        "schema": SPLIT_SCHEMA,
        "protocol": split.protocol,
        "seed": split.seed,
        "val_fraction": split.val_fraction,
        "groups": {ids_arr[i]: groups[i] for i in used},
        "folds": [
            {
                "name": f.name,
                "train": ids_arr[f.train].tolist(),
                "val": ids_arr[f.val].tolist(),
                "test": ids_arr[f.test].tolist(),
            }
            for f in split.folds
        ],
    }


def save_split(split: Split, ids: list[str], groups: np.ndarray, path: str | Path) -> None:
    jsonio.write_json(path, split_to_dict(split, ids, groups))


def load_split(path: str | Path, ids: list[str], groups: np.ndarray) -> tuple[Split, list[str]]:
    """Load a saved split against the current manifest and re-check it for leakage.

    Groups are checked twice: with the manifest's groups and with the groups recorded in the file.
    Ids in the file that are no longer in the manifest are dropped and reported in the returned notes.

    Raises:
        SplitError: unreadable file or no overlap with the data.
        LeakageError: a group straddles partitions.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SplitError(f"cannot read split file {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("schema") != SPLIT_SCHEMA or "folds" not in doc:
        raise SplitError(f"{path} is not a lablens split file (schema {SPLIT_SCHEMA})")
    position = {rid: i for i, rid in enumerate(ids)}
    notes: list[str] = []
    folds = []
    missing: set[str] = set()
    for f in doc["folds"]:
        parts = []
        for side in ("train", "val", "test"):
            names = f.get(side, [])
            missing.update(n for n in names if n not in position)
            parts.append(np.array(sorted(position[n] for n in names if n in position), dtype=np.int64))
        folds.append(Fold(str(f.get("name", f"fold{len(folds) + 1}")), *parts))
    if missing:
        notes.append(f"{len(missing)} image(s) named in {path.name} are not in the data and were dropped")
    if not any(len(f.train) for f in folds):
        raise SplitError(f"split file {path} shares no image with this data")
    split = Split(
        str(doc.get("protocol", "file")), int(doc.get("seed", 0)), float(doc.get("val_fraction", 0.1)), folds
    )
    check_no_leakage(split, groups)
    recorded = doc.get("groups") or {}
    if recorded:
        file_groups = np.array([recorded.get(rid, f"\x00{rid}") for rid in ids], dtype=object)
        check_no_leakage(split, file_groups)
    return split, notes
