"""Run every method on every fold: fit on the training part only, predict the test part, time both.

The only data a method's ``fit`` receives are the fold's training and validation rows (and their groups,
for grouped inner search); the test rows reach ``predict_proba`` only. Features are per-image functions of
the pixels (cached), so nothing learned from one image set ever touches another.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.markup import escape

from lablens.compare.methods import Method
from lablens.data.splits import Fold
from lablens.data.synthetic import SyntheticJoin
from lablens.errors import SettingError
from lablens.evaluate.summary import evaluate_predictions
from lablens.progress import SilentProgress
from lablens.train.context import FitContext

FOLD_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "macro_precision",
    "macro_recall",
    "macro_specificity",
    "macro_f1",
    "weighted_f1",
    "macro_jaccard",
    "mcc",
    "kappa",
    "macro_auc",
    "log_loss",
    "brier",
    "ece",
)


@dataclass
class FoldResult:
    """One method on one fold."""

    method: str
    fold: str
    test: np.ndarray  # row positions
    proba: np.ndarray  # len(test) × K
    metrics: dict[str, float | None]
    fit_s: float
    predict_s: float
    n_train: int
    importances: dict[str, float] | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    synthetic: dict[str, Any] | None = None  # what joined the training partition


def fold_metrics(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, float | None]:
    """Point estimates of the comparison metrics on one fold's test part."""
    doc = evaluate_predictions(y, proba, classes, n_boot=0, top_k=())
    return {k: doc["overall"][k]["value"] for k in FOLD_METRICS if k in doc["overall"]}


def run_fold(
    method: Method,
    fold: Fold,
    pixels: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    classes: list[str],
    context: FitContext | None = None,
    synthetic: SyntheticJoin | None = None,
) -> FoldResult:
    """Fit ``method`` on the fold's training (+ validation) rows — and ``synthetic`` images, training rows only —
    and evaluate it on its test rows."""
    labels = np.asarray(classes)[y]
    est = method.build()
    val_x = pixels[fold.val] if len(fold.val) else None
    val_y = labels[fold.val] if len(fold.val) else None
    train = (pixels[fold.train], labels[fold.train], groups[fold.train])
    syn_doc = None
    if synthetic is not None:
        *train, syn_doc = synthetic.join(fold, *train)
    t0 = time.perf_counter()
    est.fit(*train[:2], val_x, val_y, groups=train[2], groups_val=groups[fold.val], context=context)
    fit_s = time.perf_counter() - t0
    if list(est.classes_) != list(classes):
        raise SettingError(f"{method.name} on {fold.name}: a class is missing from the training part")
    t0 = time.perf_counter()
    device = context.device if context else None
    batch = context.eval_batch_size if context else None
    proba = np.asarray(
        est.predict_proba(pixels[fold.test], device=device, batch_size=batch), dtype=np.float64
    )
    predict_s = time.perf_counter() - t0
    importances = est.feature_importances() if hasattr(est, "feature_importances") else None
    return FoldResult(
        method=method.name,
        fold=fold.name,
        test=np.asarray(fold.test),
        proba=proba,
        metrics=fold_metrics(y[fold.test], proba, classes),
        fit_s=fit_s,
        predict_s=predict_s,
        n_train=len(fold.train) + len(fold.val),
        importances=importances,
        best_params=dict(getattr(est, "best_params_", {}) or {}),
        synthetic=syn_doc,
    )


def run_all(
    methods: list[Method],
    folds: list[Fold],
    pixels: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    classes: list[str],
    context: FitContext,
    synthetic: SyntheticJoin | None = None,
) -> list[FoldResult]:
    """Every method on every fold, in order (method-major), with one progress bar per method.

    ``context`` says where fits run; its progress shows the comparison (the fits themselves run quietly).
    """
    progress = context.progress
    quiet = dataclasses.replace(context, progress=SilentProgress())
    results = []
    for method in methods:
        shown = escape(method.name)  # method names contain brackets, which Rich would read as markup
        task = progress.task(shown, len(folds))
        for fold in folds:
            res = run_fold(method, fold, pixels, y, np.asarray(groups).astype(str), classes, quiet, synthetic)
            results.append(res)
            task.advance(1, **{"macro_f1": res.metrics.get("macro_f1") or 0.0})
        task.done()
        done = [r for r in results if r.method == method.name]
        mean_acc = np.mean([r.metrics["accuracy"] for r in done])
        progress.log(
            f"{shown}: accuracy {mean_acc:.3f} over {len(done)} folds "
            f"(fit {np.mean([r.fit_s for r in done]):.1f} s/fold)"
        )
    return results
