"""The Manifest: one validated table of usable images (``id, path, label, group, sha256`` …).

``id`` is the path relative to the data root in POSIX form: a stable name for an image used by split
files, predictions and reports. ``group`` is the patient/specimen/slide an image belongs to (the image
itself when unknown); splits and bootstrap CIs never cut a group in two.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

CORE_COLUMNS = ("id", "path", "label", "group", "sha256")


@dataclass
class Manifest:
    """Validated images with labels and groups.

    Attributes:
        table: one row per usable image; columns ``id, path, label, group, sha256`` then optional
            ``reader`` (a second reader's label) and free metadata columns.
        root: the folder ids are relative to.
        classes: sorted class names (fixed at construction, so subsets keep the full class list).
        group_source: where the groups came from (a column, a regex on file names, or ``file``: none given,
            each image is its own group).
    """

    table: pd.DataFrame
    root: Path
    classes: list[str] = field(default_factory=list)
    group_source: str = "file"

    def __post_init__(self) -> None:
        missing = [c for c in CORE_COLUMNS if c not in self.table.columns]
        if missing:
            raise ValueError(f"manifest table lacks columns {missing}")
        self.table = self.table.reset_index(drop=True)
        if not self.classes:
            self.classes = sorted(self.table["label"].unique().tolist())

    def __len__(self) -> int:
        return len(self.table)

    @property
    def ids(self) -> list[str]:
        return self.table["id"].tolist()

    @property
    def paths(self) -> list[str]:
        return self.table["path"].tolist()

    @property
    def groups(self) -> np.ndarray:
        return self.table["group"].to_numpy(dtype=object)

    @property
    def y(self) -> np.ndarray:
        """Integer class index of every row."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[label] for label in self.table["label"]], dtype=np.int64)

    @property
    def reader(self) -> np.ndarray | None:
        return self.table["reader"].to_numpy(dtype=object) if "reader" in self.table.columns else None

    def subset(self, rows: np.ndarray | list[int]) -> Manifest:
        """Rows by position, keeping the full class list."""
        return Manifest(
            self.table.iloc[np.asarray(rows, dtype=np.int64)].copy(),
            self.root,
            list(self.classes),
            self.group_source,
        )

    def content_hash(self) -> str:
        """sha256 over (id, label, group, file sha256) in row order: names the exact data a model saw."""
        h = hashlib.sha256()
        for row in self.table[["id", "label", "group", "sha256"]].itertuples(index=False):
            h.update("\x1f".join(str(v) for v in row).encode("utf-8"))
            h.update(b"\x1e")
        return h.hexdigest()

    def class_counts(self) -> dict[str, int]:
        counts = self.table["label"].value_counts()
        return {c: int(counts.get(c, 0)) for c in self.classes}

    def to_csv(self, path: str | Path) -> None:
        self.table.to_csv(path, index=False)
