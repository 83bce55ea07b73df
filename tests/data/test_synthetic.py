"""Which synthetic images join a fold: a seeded draw capped per class, the same on every call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lablens.data.manifest import Manifest
from lablens.data.splits import Fold
from lablens.data.synthetic import SyntheticSet, pick_synthetic


def _manifest(labels: list[str], prefix: str) -> Manifest:
    ids = [f"{prefix}{i}" for i in range(len(labels))]
    table = pd.DataFrame({"id": ids, "path": ids, "label": labels, "group": ids, "sha256": ids})
    return Manifest(table, Path("."), ["a", "b"])


def test_the_ratio_caps_each_class_and_the_draw_replays() -> None:
    real = _manifest(["a"] * 10 + ["b"] * 4, "r")
    fold = Fold("fold1", np.arange(12), np.array([12], np.int64), np.array([13], np.int64))
    syn = SyntheticSet(_manifest(["a"] * 3 + ["b"] * 20, "s"), [], None)
    assert len(pick_synthetic(syn, real, fold, None, 0)) == 23
    rows = pick_synthetic(syn, real, fold, 1.5, seed=3)
    labels = syn.manifest.table["label"].to_numpy()[rows]
    assert (labels == "a").sum() == 3 and (labels == "b").sum() == 3  # 1.5 × 2 real b in training
    np.testing.assert_array_equal(rows, pick_synthetic(syn, real, fold, 1.5, seed=3))
    assert not np.array_equal(rows, pick_synthetic(syn, real, fold, 1.5, seed=4))
