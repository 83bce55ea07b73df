"""Temperature scaling fitted only on images the model never trained on.

A family that keeps its validation images apart (every deep family) is calibrated on them. A family that folds
the validation images into training (``Capabilities.folds_validation``: the classical pipelines) has no unseen
images left, so its temperature is fitted on **cross-fitted** scores: the training + validation images are split
into grouped, stratified folds; a fresh copy of the model is fitted on all folds but one and scores the one held
out; the out-of-fold scores of every image then fit the temperature of the model trained on all of them (the
scheme of scikit-learn's ``CalibratedClassifierCV(ensemble=False)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold

from lablens.evaluate.calibration import fit_temperature
from lablens.train.context import FitContext


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and where its data came from (recorded in the bundle's card)."""

    temperature: float
    method: str  # "validation", "cross-fitted", or "none"
    n_images: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "temperature",
            "temperature": self.temperature,
            "fitted_on": self.method,
            "n_images": self.n_images,
            **({"note": self.note} if self.note else {}),
        }


def calibrate(
    est: Any,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None,
    y_val: np.ndarray | None,
    *,
    groups: np.ndarray | None = None,
    groups_val: np.ndarray | None = None,
    context: FitContext | None = None,
    logits_of: Callable[[Any, np.ndarray], np.ndarray] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> Calibration:
    """The temperature of the fitted ``est`` (labels as given to ``fit``), from images it never trained on.

    ``logits_of(model, X)`` scores images (default ``model.predict_logits``; distributed runs pass one that
    shares the work between processes).
    """
    score = logits_of or (lambda model, X: model.predict_logits(X))
    if not type(est).capabilities.folds_validation:
        if X_val is None or len(X_val) == 0:
            return Calibration(1.0, "none", 0, "no validation images")
        y_idx = np.searchsorted(est.classes_, np.asarray(y_val))
        return Calibration(fit_temperature(score(est, X_val), y_idx), "validation", len(y_idx))
    with_val = X_val is not None and len(X_val) > 0
    X = np.concatenate([X_train, X_val]) if with_val else X_train
    y = np.concatenate([np.asarray(y_train), np.asarray(y_val)]) if with_val else np.asarray(y_train)
    if groups is None:
        g = np.arange(len(y)).astype(str)  # each image its own group
    else:
        g = np.concatenate([np.asarray(groups), np.asarray(groups_val)]) if with_val else np.asarray(groups)
    return _cross_fitted(est, X, y, g.astype(str), context, score, folds, seed)


def _cross_fitted(
    est: Any,
    X: np.ndarray,
    y: np.ndarray,
    g: np.ndarray,
    context: FitContext | None,
    score: Callable[[Any, np.ndarray], np.ndarray],
    folds: int,
    seed: int,
) -> Calibration:
    """Fit on all folds but one, score the one held out; the out-of-fold scores fit the temperature."""
    y_idx = np.searchsorted(est.classes_, y)
    groups_per_class = min(len(np.unique(g[y_idx == k])) for k in range(len(est.classes_)))
    k = min(folds, groups_per_class)
    if k < 2:
        return Calibration(
            1.0, "none", 0, "a class has fewer than 2 groups: no unseen images to calibrate on"
        )
    oof = np.zeros((len(y), len(est.classes_)))
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for train, held in splitter.split(np.zeros(len(y)), y_idx, g):
        part = clone(est).fit(X[train], y[train], groups=g[train], context=context)
        if list(part.classes_) != list(est.classes_):
            return Calibration(1.0, "none", 0, "a class is missing from a cross-fitting fold")
        oof[held] = score(part, X[held])
    return Calibration(fit_temperature(oof, y_idx), "cross-fitted", len(y), f"{k} grouped folds")
