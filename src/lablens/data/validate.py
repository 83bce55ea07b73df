"""Ingestion and validation, done once: an ImageFolder tree or a CSV becomes a :class:`Manifest`.

Every file that cannot be used gets a :class:`Problem` naming the file and the reason, is left out,
and is counted in the :class:`DataReport`; the run goes on with the rest. Only when nothing usable is
left does :func:`load_dataset` raise :class:`DataError`.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from lablens.data.io import (
    SUPPORTED_SUFFIXES,
    DecodeLimits,
    ImageError,
    is_valid_utf8_name,
    read_image,
    safe_display_name,
    walk_files,
)
from lablens.data.layouts import annotation_layout
from lablens.data.manifest import Manifest
from lablens.data.tables import TableError, read_text_csv
from lablens.errors import LablensError

MANIFEST_NAME = "manifest.csv"


class DataError(LablensError):
    """The data as a whole cannot be used (no readable image, unreadable CSV, …)."""


@dataclass
class Problem:
    """One input left out, and why."""

    path: str
    kind: str
    reason: str


@dataclass
class DataReport:
    """What ingestion found: counts, per-class totals, and every problem."""

    source: str
    layout: str
    n_found: int = 0
    n_usable: int = 0
    n_groups: int = 0
    group_source: str = "file"
    class_counts: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        return self.n_found - self.n_usable

    def counts_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(p.kind for p in self.problems).items()))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n_skipped"] = self.n_skipped
        d["counts_by_kind"] = self.counts_by_kind()
        return d


def load_dataset(
    source: str | Path,
    *,
    layout: str = "auto",
    path_column: str = "path",
    label_column: str = "label",
    group_column: str | None = None,
    group_regex: str | None = None,
    reader_column: str | None = None,
    limits: DecodeLimits | None = None,
    min_groups_per_class: int = 1,
    known_classes: list[str] | None = None,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[Manifest, DataReport]:
    """Scan, decode and check every image under ``source``; return the usable ones and a report.

    Args:
        source: an ImageFolder root (``root/<class>/<image>``), a folder holding ``manifest.csv``, or
            a CSV file with at least ``path`` and ``label`` columns (paths relative to the CSV's folder).
        layout: ``auto`` (CSV file, else ``manifest.csv`` in the folder if present, else ImageFolder),
            ``folder`` or ``csv``.
        group_column: CSV column naming the patient/specimen/slide; ``group`` is used when present.
        group_regex: alternatively a regular expression on the file name whose first capture group
            (or whole match) is the group, e.g. ``^(P\\d+)_``.
        reader_column: CSV column with a second reader's label; ``reader`` is used when present.
        min_groups_per_class: classes with fewer distinct groups are left out (the split needs them).
        known_classes: when given (evaluating a trained model), labels outside it are left out.
        on_progress: called as ``on_progress(done, total)`` while images are decoded.

    Raises:
        DataError: when the source is missing or unreadable, or no usable image remains.
    """
    source = Path(source)
    if not source.exists():
        raise DataError(f"{safe_display_name(source)}: no such file or folder")
    limits = limits or DecodeLimits()
    csv_path = _resolve_csv(source, layout)
    if csv_path is not None:
        root = csv_path.parent
        report = DataReport(source=safe_display_name(source), layout="csv")
        if csv_path.parent == source:
            report.notes.append(f"read labels from {MANIFEST_NAME} in the data folder")
        candidates = _scan_csv(csv_path, path_column, label_column, group_column, reader_column, report)
    else:
        found = annotation_layout(source)
        if found is not None:
            kind, hint = found
            raise DataError(f"{safe_display_name(source)} is a {kind} folder: {hint}")
        root = source
        report = DataReport(source=safe_display_name(source), layout="folder")
        candidates = _scan_folder(source, report)

    report.n_found = len(candidates) + len(report.problems)
    candidates = _drop_unknown_labels(candidates, known_classes, report)
    candidates = _decode_all(candidates, limits, workers, on_progress, report)
    candidates = _drop_duplicates(candidates, report)
    candidates = _assign_groups(candidates, group_regex, report)
    candidates = _drop_small_classes(candidates, min_groups_per_class, report)

    if candidates.empty:
        kinds = ", ".join(f"{n} {k}" for k, n in report.counts_by_kind().items()) or "no image files"
        raise DataError(f"no usable image in {safe_display_name(source)} ({kinds})")
    candidates = candidates.sort_values("id", kind="stable").reset_index(drop=True)
    classes = sorted(known_classes) if known_classes else None
    manifest = Manifest(candidates, root=root, classes=classes or [], group_source=report.group_source)
    report.n_usable = len(manifest)
    report.n_groups = int(manifest.table["group"].nunique())
    report.class_counts = manifest.class_counts()
    return manifest, report


def _resolve_csv(source: Path, layout: str) -> Path | None:
    if layout not in ("auto", "folder", "csv"):
        raise DataError(f"unknown data layout {layout!r} (auto, folder or csv)")
    if source.is_file():
        if layout == "folder":
            raise DataError(f"{safe_display_name(source)} is a file, but layout 'folder' was asked for")
        return source
    if layout == "csv" or (layout == "auto" and (source / MANIFEST_NAME).is_file()):
        if not (source / MANIFEST_NAME).is_file():
            raise DataError(f"{safe_display_name(source)} holds no {MANIFEST_NAME}")
        return source / MANIFEST_NAME
    return None


def _relative_id(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _scan_folder(root: Path, report: DataReport) -> pd.DataFrame:
    """ImageFolder: each top-level sub-folder is a class; images may sit in nested folders below it."""
    rows = []
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(
            f"{safe_display_name(root)} has no class sub-folders: expected root/<class>/<image> "
            f"or a {MANIFEST_NAME}"
        )
    for class_dir in class_dirs:
        label = class_dir.name
        for path in walk_files(class_dir):
            rid = _relative_id(path, root)
            if not is_valid_utf8_name(path):
                report.problems.append(
                    Problem(
                        safe_display_name(rid),
                        "bad_name",
                        "file name is not valid UTF-8; rename the file (names are stored as text)",
                    )
                )
                continue
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                report.problems.append(
                    Problem(
                        rid,
                        "not_image",
                        f"unsupported file type '{path.suffix or path.name}' "
                        f"(expected {', '.join(SUPPORTED_SUFFIXES)})",
                    )
                )
                continue
            rows.append({"id": rid, "path": str(path), "label": label})
    return pd.DataFrame(rows, columns=["id", "path", "label"])


def _scan_csv(
    csv_path: Path,
    path_column: str,
    label_column: str,
    group_column: str | None,
    reader_column: str | None,
    report: DataReport,
) -> pd.DataFrame:
    try:
        table = read_text_csv(csv_path)
    except TableError as exc:
        raise DataError(f"cannot read {safe_display_name(csv_path)}: {exc.reason}") from None
    for col, what in ((path_column, "image paths"), (label_column, "labels")):
        if col not in table.columns:
            raise DataError(
                f"{safe_display_name(csv_path)} has no column {col!r} for {what} "
                f"(columns: {', '.join(table.columns)})"
            )
    if group_column is None and "group" in table.columns:
        group_column = "group"
    if group_column is not None and group_column not in table.columns:
        raise DataError(f"{safe_display_name(csv_path)} has no group column {group_column!r}")
    if reader_column is None and "reader" in table.columns:
        reader_column = "reader"
    if reader_column is not None and reader_column not in table.columns:
        raise DataError(f"{safe_display_name(csv_path)} has no reader column {reader_column!r}")
    if group_column:
        report.group_source = f"column '{group_column}'"
    reserved = {"id", "path", "label", "group", "reader", "sha256", "width", "height", "source_mode"}
    rows = []
    root = csv_path.parent
    for i, rec in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        raw_path = rec[path_column].strip()
        label = rec[label_column].strip()
        if not raw_path:
            report.problems.append(Problem(f"{csv_path.name}:{i}", "missing_path", "empty path"))
            continue
        path = Path(raw_path) if Path(raw_path).is_absolute() else root / raw_path
        rid = _relative_id(path, root)
        if not label:
            report.problems.append(Problem(rid, "missing_label", f"empty label on line {i}"))
            continue
        if not path.is_file():
            report.problems.append(Problem(rid, "missing_file", f"listed on line {i} but not found"))
            continue
        row = {"id": rid, "path": str(path), "label": label}
        if group_column:
            row["group"] = rec[group_column].strip()
        if reader_column:
            row["reader"] = rec[reader_column].strip() or None
        for key, value in rec.items():
            if key not in (path_column, label_column, group_column, reader_column) and key not in reserved:
                row[key] = value
        rows.append(row)
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["id", "path", "label"])


def _drop_unknown_labels(df: pd.DataFrame, known: list[str] | None, report: DataReport) -> pd.DataFrame:
    if not known or df.empty:
        return df
    bad = ~df["label"].isin(known)
    for rec in df[bad].itertuples(index=False):
        report.problems.append(
            Problem(rec.id, "unknown_label", f"label {rec.label!r} is not a class of the model")
        )
    return df[~bad].reset_index(drop=True)


def _decode_all(
    df: pd.DataFrame,
    limits: DecodeLimits,
    workers: int | None,
    on_progress: Callable[[int, int], None] | None,
    report: DataReport,
) -> pd.DataFrame:
    if df.empty:
        return df.assign(sha256=[], width=[], height=[], source_mode=[])

    def check(path: str) -> tuple[str, int, int, str] | ImageError:
        try:
            img = read_image(path, limits)
        except ImageError as exc:
            return exc
        return img.sha256, img.pixels.shape[1], img.pixels.shape[0], img.source_mode

    workers = workers or min(4, (os.cpu_count() or 1) + 1)
    results = []
    total = len(df)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow/OpenCV release the GIL while decoding
        for done, res in enumerate(pool.map(check, df["path"]), start=1):
            results.append(res)
            if on_progress:
                on_progress(done, total)
    keep, facts = [], []
    for rec, res in zip(df.itertuples(index=False), results, strict=True):
        if isinstance(res, ImageError):
            report.problems.append(Problem(rec.id, res.kind, res.reason))
            keep.append(False)
        else:
            keep.append(True)
            facts.append(res)
    out = df[keep].reset_index(drop=True)
    out["sha256"] = [f[0] for f in facts]
    out["width"] = [f[1] for f in facts]
    out["height"] = [f[2] for f in facts]
    out["source_mode"] = [f[3] for f in facts]
    return out


def _drop_duplicates(df: pd.DataFrame, report: DataReport) -> pd.DataFrame:
    """Byte-identical files: keep the first of each same-label set; drop every copy when labels differ."""
    if df.empty:
        return df
    df = df.sort_values("id", kind="stable").reset_index(drop=True)
    drop = set()
    for _, grp in df.groupby("sha256", sort=False):
        if len(grp) < 2:
            continue
        labels = sorted(grp["label"].unique())
        ids = grp["id"].tolist()
        if len(labels) > 1:
            for rid, label in zip(ids, grp["label"], strict=True):
                others = ", ".join(
                    f"{o} ({lab})" for o, lab in zip(ids, grp["label"], strict=True) if o != rid
                )
                report.problems.append(
                    Problem(
                        rid,
                        "label_conflict",
                        f"identical bytes to {others} but labelled {label!r}; all copies left out",
                    )
                )
            drop.update(grp.index)
        else:
            for rid in ids[1:]:
                report.problems.append(Problem(rid, "duplicate", f"byte-identical duplicate of {ids[0]}"))
            drop.update(grp.index[1:])
    return df.drop(index=sorted(drop)).reset_index(drop=True)


def _assign_groups(df: pd.DataFrame, group_regex: str | None, report: DataReport) -> pd.DataFrame:
    if df.empty:
        return df.assign(group=[])
    if "group" in df.columns:
        empty = df["group"].fillna("").astype(str).str.len() == 0
        if empty.any():
            report.notes.append(f"{int(empty.sum())} rows had no group: each is its own group")
            df.loc[empty, "group"] = df.loc[empty, "id"]
        return df
    if group_regex:
        try:
            pattern = re.compile(group_regex)
        except re.error as exc:
            raise DataError(f"invalid group regex {group_regex!r}: {exc}") from exc
        groups, unmatched = [], 0
        for rid in df["id"]:
            m = pattern.search(Path(rid).name)
            if m is None:
                unmatched += 1
                groups.append(rid)
            else:
                groups.append(m.group(1) if m.groups() else m.group(0))
        report.group_source = f"regex {group_regex!r} on file names"
        if unmatched:
            report.notes.append(
                f"{unmatched} file names did not match the group regex: each is its own group"
            )
        return df.assign(group=groups)
    report.group_source = "file (no group information: each image is its own group)"
    return df.assign(group=df["id"])


def _drop_small_classes(df: pd.DataFrame, min_groups: int, report: DataReport) -> pd.DataFrame:
    if df.empty or min_groups <= 1:
        return df
    n_groups = df.groupby("label")["group"].nunique()
    small = sorted(label for label, n in n_groups.items() if n < min_groups)
    for label in small:
        n_img = int((df["label"] == label).sum())
        report.problems.append(
            Problem(
                label + "/",
                "class_too_small",
                f"class {label!r} has {n_img} image(s) in {int(n_groups[label])} group(s); the split needs "
                f"at least {min_groups} groups per class, so its images are left out",
            )
        )
    return df[~df["label"].isin(small)].reset_index(drop=True)
