"""Synthetic training images (``lablens synthesize`` output, or any generator's): read, checked, and joined to
the **training partition only**.

A synthetic set is a folder with images and ``manifest.csv`` (``path, label, synthetic`` = 1 on every row, plus
what made them: ``generator`` hash, ``seed``). Optionally ``sources.csv`` lists the sha256 of every real image the
generator learned from; then a run refuses a fold whose validation or test partition holds one of them (a
generator that saw a test image can hand it back to training, a leak no metric would show). A set without
``sources.csv`` is used with a note saying that such a leak cannot be ruled out.

The split is always made on the real images first; validation, test, calibration and every reported metric use
real images only. Randomness (which synthetic images a ratio keeps) is drawn from the run's seed, apart from the
deterministic checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lablens.data.manifest import Manifest
from lablens.data.splits import Fold
from lablens.data.tables import TableError, read_text_csv
from lablens.errors import LablensError

MANIFEST = "manifest.csv"
SOURCES = "sources.csv"
#: salt of the draw that picks synthetic images for a ratio
PICK_SALT = 7919


class SyntheticError(LablensError, ValueError):
    """A synthetic set that cannot be used as given; the message names the file or setting and the reason."""


@dataclass
class SyntheticSet:
    """Synthetic images as a manifest (labels in the real data's class list) and what is known of their making.

    Attributes:
        manifest: the usable synthetic images.
        generators: the generator hashes the manifest names (empty when it names none).
        sources: sha256 of the real images the generator learned from; ``None`` when not recorded.
    """

    manifest: Manifest
    generators: list[str]
    sources: frozenset[str] | None

    @property
    def note(self) -> str | None:
        if self.sources is None:
            return (
                f"{self.manifest.root}: no {SOURCES} (the real images its generator learned from): a leak of "
                "validation or test images through the generator cannot be ruled out"
            )
        return None


def check_synthetic_table(path: str | Path, classes: list[str]) -> Path:
    """The set's ``manifest.csv`` after checking it: every row marked synthetic, every label a real class.

    Raises:
        SyntheticError: naming the file, the row or the class.
    """
    folder = Path(path)
    table_path = folder / MANIFEST if folder.is_dir() else folder
    if not table_path.is_file():
        raise SyntheticError(f"--synthetic {path}: no {MANIFEST} there (write one with lablens synthesize)")
    try:
        df = read_text_csv(table_path)
    except TableError as exc:
        raise SyntheticError(f"--synthetic {exc}") from None
    missing = {"path", "label", "synthetic"} - set(df.columns)
    if missing:
        raise SyntheticError(f"--synthetic {table_path}: needs the columns {', '.join(sorted(missing))}")
    flags = df["synthetic"].str.strip().str.lower()
    bad = flags[~flags.isin(["1", "true"])]
    if len(bad):
        row = int(bad.index[0]) + 2
        raise SyntheticError(
            f"--synthetic {table_path}, row {row}: synthetic is {df['synthetic'].iloc[bad.index[0]]!r}, not 1; "
            "only images marked synthetic may join a training partition"
        )
    unknown = sorted(set(df["label"]) - set(classes))
    if unknown:
        raise SyntheticError(
            f"--synthetic {table_path}: class {unknown[0]!r} is not a class of the data "
            f"({', '.join(classes)})"
        )
    return table_path


def read_sources(folder: Path) -> frozenset[str] | None:
    """The sha256 column of ``sources.csv``, or ``None`` when the set has none."""
    path = folder / SOURCES
    if not path.is_file():
        return None
    try:
        df = read_text_csv(path)
    except TableError as exc:
        raise SyntheticError(f"--synthetic {exc}") from None
    if "sha256" not in df.columns:
        raise SyntheticError(f"--synthetic {path}: needs a sha256 column")
    return frozenset(df["sha256"].str.strip().str.lower())


def check_no_leak(syn: SyntheticSet, real: Manifest, fold: Fold) -> None:
    """Refuse a fold whose validation or test images are in the set (exact copies) or were learned from."""
    held = np.concatenate([fold.val, fold.test]).astype(np.int64)
    sha = [str(s).lower() for s in real.table["sha256"].to_numpy()[held]]
    copies = set(syn.manifest.table["sha256"].str.lower())
    leaks = [
        (what, [i for i, s in zip(held, sha, strict=True) if s in known])
        for what, known in (
            ("holds exact copies of", copies),
            ("has a generator that learned from", syn.sources),
        )
        if known is not None
    ]
    for what, rows in leaks:
        if rows:
            raise SyntheticError(
                f"--synthetic {syn.manifest.root}: {what} {len(rows)} image(s) of the validation or test "
                f"partition of {fold.name} (e.g. {real.table['path'].iloc[rows[0]]}); synthesize from this "
                "split's training partition (lablens synthesize --split RUN/split.json)"
            )


def pick_synthetic(
    syn: SyntheticSet, real: Manifest, fold: Fold, ratio: float | None, seed: int
) -> np.ndarray:
    """Rows of ``syn.manifest`` that join ``fold``'s training partition.

    ``ratio`` caps each class's synthetic images at ``ratio`` × its real training images (``None``: all); which
    ones is a seeded draw, the same in every process and after a resume.
    """
    labels = syn.manifest.table["label"].to_numpy()
    if ratio is None:
        return np.arange(len(labels))
    real_counts = real.table["label"].iloc[fold.train].value_counts()
    rng = np.random.default_rng([seed, PICK_SALT])
    order = rng.permutation(len(labels))
    keep: list[int] = []
    for c in sorted(set(labels)):
        rows = order[labels[order] == c]
        keep.extend(rows[: round(ratio * int(real_counts.get(c, 0)))].tolist())
    return np.sort(np.asarray(keep, dtype=np.int64))


def synthetic_summary(syn: SyntheticSet, rows: np.ndarray, ratio: float | None) -> dict[str, Any]:
    """What a run's metrics record of the synthetic images it trained on."""
    used = syn.manifest.table["label"].iloc[rows].value_counts().sort_index()
    return {
        "path": str(syn.manifest.root),
        "generators": syn.generators,
        "ratio": ratio,
        "used": {str(c): int(n) for c, n in used.items()},
        "available": len(syn.manifest),
        "sources_recorded": syn.sources is not None,
        "partitions": "training only; validation, test, calibration and metrics use real images only",
    }


@dataclass
class SyntheticJoin:
    """Synthetic images (decoded like the real ones) ready to join the training partition of any fold."""

    syn: SyntheticSet
    pixels: np.ndarray
    real: Manifest
    ratio: float | None
    seed: int

    def join(
        self, fold: Fold, x: np.ndarray, y: np.ndarray, groups: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """The fold's real training images, labels and groups plus the synthetic ones (each its own group), and
        what the metrics record of them. Validation and test partitions are never touched."""
        check_no_leak(self.syn, self.real, fold)
        rows = pick_synthetic(self.syn, self.real, fold, self.ratio, self.seed)
        table = self.syn.manifest.table.iloc[rows]
        return (
            np.concatenate([x, self.pixels[rows]]),
            np.concatenate([y, table["label"].to_numpy()]),
            np.concatenate(
                [np.asarray(groups).astype(str), ("synthetic:" + table["id"].astype(str)).to_numpy()]
            ),
            synthetic_summary(self.syn, rows, self.ratio),
        )
