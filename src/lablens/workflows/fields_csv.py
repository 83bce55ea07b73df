"""``lablens fields-csv``: the layouts labs already have → the fields CSV ``analyze``, ``crop-cells`` and
``train --label-level sample`` read (``path, sample[, label][, um_per_px]``).

Sources:

- a CSV with a ``path`` column and a label per field or slide (``label``, ``slide_label``, ``sample_label``,
  ``class``, or the column ``--label-column`` names), e.g. the ANA fields' ``labels.csv``;
- a folder of field images: class sub-folders give the label (``root/<label>/<field>``), loose images none.

The sample (serum, slide, smear) of each field comes from ``--sample-column``, or from ``--sample-regex`` on the
file name (its first group, e.g. ``'^([A-Z]+-\\d+)'`` makes ``ACA-2-t.jpg`` and ``ACA-2.jpg`` one sample
``ACA-2``), or else each field is its own sample. A regex that misses a file, or a sample whose fields carry two
labels, is refused naming them. Paths are written relative to the new CSV's folder when they can be.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from lablens.data.io import SUPPORTED_SUFFIXES, walk_files
from lablens.data.tables import TableError, read_text_csv
from lablens.errors import RunError
from lablens.progress import console
from lablens.verb_config import VerbConfig

LABEL_COLUMNS = ("label", "slide_label", "sample_label", "class")


@dataclass
class FieldsCsv:
    out: Path
    table: pd.DataFrame
    label_from: str | None
    sample_from: str


def _from_csv(
    csv: Path, label_column: str | None, sample_column: str | None
) -> tuple[pd.DataFrame, str | None]:
    try:
        df = read_text_csv(csv)
    except TableError as exc:
        raise RunError(str(exc)) from None
    if "path" not in df.columns:
        raise RunError(f"{csv}: a fields table needs a 'path' column (it has {', '.join(df.columns)})")
    if label_column is not None and label_column not in df.columns:
        raise RunError(f"--label-column {label_column!r}: not a column of {csv} ({', '.join(df.columns)})")
    if sample_column is not None and sample_column not in df.columns:
        raise RunError(f"--sample-column {sample_column!r}: not a column of {csv} ({', '.join(df.columns)})")
    label = label_column or next((c for c in LABEL_COLUMNS if c in df.columns), None)
    paths = [Path(p) if Path(p).is_absolute() else csv.parent / p for p in df["path"]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise RunError(f"{csv}: {len(missing)} listed field(s) not found, e.g. {missing[0]}")
    out = pd.DataFrame({"file": paths})
    if label is not None:
        out["label"] = df[label].astype(str).str.strip()
    if sample_column is not None:
        out["sample"] = df[sample_column].astype(str).str.strip()
    return out, f"column {label!r}" if label else None


def _from_folder(root: Path) -> tuple[pd.DataFrame, str | None]:
    files = [f for f in walk_files(root) if f.suffix.lower() in SUPPORTED_SUFFIXES]
    if not files:
        raise RunError(f"{root}: no field images (JPEG, PNG, BMP, TIFF) in it")
    tops = [f.relative_to(root).parts for f in files]
    if all(len(t) > 1 for t in tops):  # root/<label>/<field>: the folder names the label
        return pd.DataFrame({"file": files, "label": [t[0] for t in tops]}), "class folders"
    return pd.DataFrame({"file": files}), None


def _samples(df: pd.DataFrame, sample_regex: str | None) -> str:
    """Fill ``df["sample"]`` (unless a column gave it); returns where the samples came from."""
    if "sample" in df.columns:
        return "column"
    if sample_regex is None:
        df["sample"] = [f.stem for f in df["file"]]
        return "file name (one field per sample)"
    try:
        pattern = re.compile(sample_regex)
    except re.error as exc:
        raise RunError(f"--sample-regex {sample_regex!r}: not a regular expression ({exc})") from None
    samples, missed = [], []
    for f in df["file"]:
        m = pattern.search(f.name)
        if m is None:
            missed.append(f.name)
            samples.append("")
        else:
            samples.append(m.group(1) if m.groups() else m.group(0))
    if missed:
        raise RunError(
            f"--sample-regex {sample_regex!r} matched {len(df) - len(missed)} of {len(df)} file names; it "
            f"misses {', '.join(missed[:3])}{' …' if len(missed) > 3 else ''}"
        )
    df["sample"] = samples
    return f"regex '{sample_regex}' on file names"


class FieldsCsvConfig(VerbConfig):
    """Where each field's label, sample and scale come from: a CSV's ``label_column`` / ``sample_column`` (or a
    ``sample_regex`` on file names), and one ``um_per_px`` for every field."""

    verb: ClassVar[str] = "fields-csv"

    label_column: str | None = None
    sample_column: str | None = None
    sample_regex: str | None = None
    um_per_px: float | None = None


def fields_csv(
    source: str | Path,
    out: str | Path,
    cfg: FieldsCsvConfig | None = None,
    *,
    progress: bool = True,
    **settings: Any,
) -> FieldsCsv:
    """Write the fields CSV of ``source`` to the new file ``out`` (its settings in ``<out>.yaml``) with ``cfg``
    (or its settings as keywords); see the module docstring."""
    cfg = FieldsCsvConfig.resolve(cfg, settings)
    label_column, sample_column, sample_regex = cfg.label_column, cfg.sample_column, cfg.sample_regex
    um_per_px = cfg.um_per_px
    source, out = Path(source), Path(out)
    for taken in (out, out.with_name(out.name + ".yaml")):
        if taken.exists():
            raise RunError(f"{taken} exists; choose another file (nothing is overwritten)")
    if out.suffix.lower() != ".csv":
        raise RunError(f"{out}: the fields table is a .csv file")
    if sample_column is not None and sample_regex is not None:
        raise RunError("give --sample-column or --sample-regex, not both")
    if um_per_px is not None and not 0.01 <= um_per_px <= 10:
        raise RunError(
            f"--um-per-px {um_per_px}: a microscope field scale lies between 0.01 and 10 µm per pixel"
        )
    if source.is_file():
        df, label_from = _from_csv(source, label_column, sample_column)
    elif source.is_dir():
        if label_column is not None or sample_column is not None:
            raise RunError("--label-column and --sample-column read a CSV; SOURCE is a folder")
        df, label_from = _from_folder(source)
    else:
        raise RunError(f"{source}: no such file or folder")
    sample_from = _samples(df, sample_regex)
    if "label" in df.columns:
        labels = df.groupby("sample")["label"].nunique()
        mixed = labels[labels > 1]
        if len(mixed):
            s = mixed.index[0]
            found = sorted(df.loc[df["sample"] == s, "label"].unique())
            raise RunError(
                f"sample {s!r} has fields labelled {' and '.join(found)}: one label per sample (check the sample "
                "rule, or give each field its own sample)"
            )
    base = out.resolve().parent
    table = pd.DataFrame({"path": [_relative(f, base) for f in df["file"]], "sample": df["sample"]})
    if "label" in df.columns:
        table["label"] = df["label"]
    if um_per_px is not None:
        table["um_per_px"] = um_per_px
    table = table.sort_values(["sample", "path"], kind="stable").reset_index(drop=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    cfg.write(out.with_name(out.name + ".yaml"))
    if progress:
        counts = (
            table.drop_duplicates("sample")["label"].value_counts().sort_index() if "label" in table else None
        )
        console.print(
            f"{len(table)} fields of {table['sample'].nunique()} samples (samples from {sample_from}"
            + (f", labels from {label_from}" if label_from else ", no labels")
            + f") → {out}",
            highlight=False,
        )
        if counts is not None:
            console.print(
                "  samples per label: " + ", ".join(f"{k} {n}" for k, n in counts.items()), highlight=False
            )
    return FieldsCsv(out, table, label_from, sample_from)


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (the CSV's folder) when on the same drive, else absolute, POSIX style."""
    path = path.resolve()
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:  # another drive (Windows)
        return path.as_posix()
