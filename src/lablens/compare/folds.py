"""The folds every method of a comparison shares."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lablens.config import CompareConfig, SplitConfig
from lablens.data.splits import Fold, Split, check_no_leakage, make_split


def comparison_protocol(cfg: CompareConfig) -> str:
    """The split protocol string of a comparison, for the record."""
    if cfg.holdout:
        return f"{cfg.holdout} hold-out × {cfg.repeats}"
    return f"kfold:{cfg.folds}" if cfg.repeats == 1 else f"repeated-kfold:{cfg.folds}x{cfg.repeats}"


def comparison_folds(
    y: np.ndarray,
    groups: np.ndarray,
    cfg: CompareConfig,
    split: SplitConfig,
    classes: Sequence[str] | None = None,
) -> list[Fold]:
    """Grouped, stratified folds; repeated hold-outs use seeds ``seed, seed+1, …``."""
    rules = {"val_fraction": split.val_fraction, "classes": classes, "missing_classes": split.missing_classes}
    if not cfg.holdout:
        proto = f"kfold:{cfg.folds}" if cfg.repeats == 1 else f"repeated-kfold:{cfg.folds}x{cfg.repeats}"
        return make_split(y, groups, proto, seed=split.seed, **rules).folds
    folds = []
    for r in range(cfg.repeats):
        one = make_split(y, groups, cfg.holdout, seed=split.seed + r, **rules).folds[0]
        folds.append(
            Fold(f"rep{r + 1}-holdout" if cfg.repeats > 1 else "holdout", one.train, one.val, one.test)
        )
    check_no_leakage(
        Split(cfg.holdout, split.seed, split.val_fraction, folds), np.asarray(groups).astype(str)
    )
    return folds


def repeat_of(fold_name: str) -> int:
    """Repeat number (1-based) encoded in a fold name (``rep2-fold3`` → 2; ``fold3`` → 1)."""
    return int(fold_name[3 : fold_name.index("-")]) if fold_name.startswith("rep") else 1
