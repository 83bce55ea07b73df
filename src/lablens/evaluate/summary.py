"""Assemble the ``lablens.metrics/1`` document: point estimates with group-bootstrap CIs.

Point estimates and bootstrap replicates go through one batched statistic (the point estimate is
the statistic under unit weights), so they are computed identically. A replicate where a metric
is undefined (e.g. the AUC of a class without positives in it) is skipped for that metric only;
the entry then carries ``"replicates"``, the number of replicates used. Macro AUC is the mean over
the classes whose AUC is defined on the full data, and a replicate where any of those is undefined
is skipped for it. The other macro averages are over the classes with at least one true example
(``macro_over``); a class without one is marked ``estimable: false``. Intervals from fewer than
:data:`MIN_GROUPS_FOR_CI` groups are flagged (``bootstrap.reliable``, ``notes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lablens.evaluate.agreement import reader_agreement
from lablens.evaluate.bootstrap import Interval, Statistic, ci_entry, encode_groups, group_bootstrap
from lablens.evaluate.calibration import (
    batched_ece,
    confidence_and_correct,
    expected_calibration_error,
    reliability_bins,
)
from lablens.evaluate.metrics import (
    PER_CLASS_METRICS,
    accuracy,
    averaged_metrics,
    balanced_accuracy,
    cohen_kappa,
    confusion_matrix,
    matthews_corrcoef,
    per_class_metrics,
    per_sample_brier,
    per_sample_log_loss,
    roc_auc_ovr,
    top_k_hits,
    weighted_mean,
    weighted_roc_auc,
)

SCHEMA = "lablens.metrics/1"
MIN_GROUPS_FOR_CI = 10  # a bootstrap over fewer groups (patients/slides) gives intervals no one should trust
PROBA_TOLERANCE = 1e-3


def validate_inputs(
    y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert ``y_true`` (class indices) and ``proba`` (rows summing to 1).

    Args:
        y_true: Integer class indices, shape ``(N,)``.
        proba: Probabilities, shape ``(N, K)``.
        classes: K class names.

    Returns:
        ``(y_true, proba)`` as int64 and float64 arrays.

    Raises:
        ValueError: On empty input, shape mismatches, out-of-range labels, or rows that are not
            probability distributions.
    """
    p = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y_true)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"proba must have shape (N, K) with N >= 1 and K >= 2, got {p.shape}")
    if p.shape[1] != len(classes):
        raise ValueError(f"proba has {p.shape[1]} columns but {len(classes)} classes were given")
    if y.shape != (p.shape[0],) or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise ValueError("y_true must be an integer array of class indices, one per row of proba")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError("y_true contains class indices outside [0, K)")
    if not np.all(np.isfinite(p)) or p.min() < -PROBA_TOLERANCE or p.max() > 1 + PROBA_TOLERANCE:
        raise ValueError("proba must contain finite values in [0, 1]")
    if np.max(np.abs(p.sum(axis=1) - 1.0)) > PROBA_TOLERANCE:
        raise ValueError("proba rows must sum to 1")
    return y.astype(np.int64), p


def classification_statistic(
    y_true: np.ndarray,
    proba: np.ndarray,
    top_k: Sequence[int],
    n_bins: int,
    auc_defined: np.ndarray,
    covered: np.ndarray | None = None,
) -> Statistic:
    """Batched statistic computing every reported metric under per-sample weights.

    Args:
        y_true: Integer classes, shape ``(N,)``.
        proba: Probabilities, shape ``(N, K)``.
        top_k: Values of k for top-k accuracy.
        n_bins: ECE bins.
        auc_defined: Boolean ``(K,)``: classes entering the macro AUC.
        covered: Boolean ``(K,)``: classes entering the other macro averages (all when None).

    Returns:
        Function mapping weights ``(b, N)`` to a dict of ``(b,)`` overall metrics and
        ``(b, K)`` arrays keyed ``"per_class/<name>"``.
    """
    n_classes = proba.shape[1]
    y_pred = proba.argmax(axis=1)
    hits = {k: top_k_hits(proba, y_true, k) for k in top_k}
    losses = per_sample_log_loss(proba, y_true)
    brier = per_sample_brier(proba, y_true)
    confidence, correct = confidence_and_correct(proba, y_true)

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        cm = confusion_matrix(y_true, y_pred, n_classes, weights)
        per_class = per_class_metrics(cm)
        out = {"accuracy": accuracy(cm), "balanced_accuracy": balanced_accuracy(cm)}
        for k, h in hits.items():
            out[f"top_{k}_accuracy"] = weighted_mean(h, weights)
        out.update(averaged_metrics(per_class, covered))
        out["mcc"] = matthews_corrcoef(cm)
        out["kappa"] = cohen_kappa(cm)
        aucs = np.stack([weighted_roc_auc(proba[:, c], y_true == c, weights) for c in range(n_classes)], -1)
        out["macro_auc"] = (
            aucs[:, auc_defined].mean(axis=1) if auc_defined.any() else np.full(len(weights), np.nan)
        )
        out["log_loss"] = weighted_mean(losses, weights)
        out["brier"] = weighted_mean(brier, weights)
        out["ece"] = batched_ece(confidence, correct, n_bins, weights)
        for name in PER_CLASS_METRICS:
            out[f"per_class/{name}"] = per_class[name]
        out["per_class/auc"] = aucs
        return out

    return statistic


def overall_names(n_classes: int, top_k: Sequence[int]) -> list[str]:
    """Names of the overall metrics, in document order (top-k only for k < K)."""
    names = ["accuracy", "balanced_accuracy"]
    names += [f"top_{k}_accuracy" for k in top_k if k < n_classes]
    names += [f"macro_{m}" for m in PER_CLASS_METRICS] + [f"weighted_{m}" for m in PER_CLASS_METRICS]
    return [*names, "mcc", "kappa", "macro_auc", "log_loss", "brier", "ece"]


@dataclass(frozen=True)
class _Estimates:
    """Point estimates and bootstrap intervals of every statistic, and the classes with a true example."""

    point: dict[str, np.ndarray]
    intervals: dict[str, Interval]
    n_boot: int
    covered: np.ndarray


def _estimate(
    y: np.ndarray,
    p: np.ndarray,
    top_k: Sequence[int],
    n_bins: int,
    codes: np.ndarray,
    n_boot: int,
    level: float,
    seed: int,
) -> _Estimates:
    """Evaluate the batched statistic at unit weights (the point estimates) and under the group bootstrap."""
    n, n_classes = p.shape
    point_auc = roc_auc_ovr(p, y)
    auc_defined = np.array([a is not None for a in point_auc])
    covered = np.bincount(y, minlength=n_classes) > 0
    statistic = classification_statistic(y, p, top_k, n_bins, auc_defined, covered)
    point = {name: values[0] for name, values in statistic(np.ones((1, n))).items()}
    point["per_class/auc"] = np.array([np.nan if a is None else a for a in point_auc])
    intervals = group_bootstrap(statistic, codes, n, n_boot, level, seed)
    return _Estimates(point, intervals, n_boot, covered)


def _entry(est: _Estimates, name: str, index: tuple[int, ...] = ()) -> dict:
    """The ``{"value", "ci"}`` entry of statistic ``name`` (at ``index`` of an array-valued one)."""
    interval: Interval | None = est.intervals.get(name)
    return ci_entry(float(est.point[name][index]), interval, index, est.n_boot)


def _per_class(est: _Estimates, cm: np.ndarray, class_names: Sequence[str]) -> dict[str, dict]:
    """Per-class entries with support; a class without a true example is marked ``estimable: false``."""
    per_class = {}
    for c, name in enumerate(class_names):
        if est.covered[c]:
            row = {m: _entry(est, f"per_class/{m}", (c,)) for m in (*PER_CLASS_METRICS, "auc")}
        else:  # no true example: sensitivity, F1, AUC … have nothing to be estimated from
            row = {m: {"value": None, "ci": None} for m in (*PER_CLASS_METRICS, "auc")}
            row["estimable"] = False
        row["support"] = int(cm[c].sum())
        per_class[name] = row
    return per_class


def _notes(
    class_names: Sequence[str], covered: np.ndarray, n_groups: int, n_boot: int, reliable: bool
) -> list[str]:
    """Caveats for the reader: classes not estimable here, intervals from too few groups."""
    notes = []
    if not covered.all():
        absent = [class_names[c] for c in np.flatnonzero(~covered)]
        notes.append(
            f"not estimable (no true example here): {', '.join(absent)}; macro averages are over the other "
            f"{int(covered.sum())} class(es)"
        )
    if n_boot and not reliable:
        notes.append(
            f"confidence intervals come from {n_groups} group(s) (patients/slides), fewer than "
            f"{MIN_GROUPS_FOR_CI}: they are unreliable"
        )
    return notes


def _calibration(p: np.ndarray, y: np.ndarray, n_bins: int) -> dict:
    """The document's calibration section: ECE and reliability bins."""
    return {
        "ece": expected_calibration_error(p, y, n_bins),
        "n_bins": int(n_bins),
        "bins": reliability_bins(p, y, n_bins),
    }


def evaluate_predictions(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    groups: np.ndarray | Sequence[object] | None = None,
    reader: np.ndarray | Sequence[object] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    top_k: Sequence[int] = (2, 3),
    n_bins: int = 15,
) -> dict:
    """Evaluate probabilistic predictions into a ``lablens.metrics/1`` document.

    Args:
        y_true: Integer class indices into ``classes``, shape ``(N,)``.
        proba: Probabilities, shape ``(N, K)``, rows summing to 1; the prediction is the argmax.
        classes: K class names.
        groups: Patient/specimen per image for the bootstrap; None for one group per image.
        reader: Optional second reader's string labels (missing values allowed).
        n_boot: Bootstrap replicates (0 disables CIs).
        level: CI coverage.
        seed: Bootstrap seed.
        top_k: Values of k reported as ``top_<k>_accuracy`` when ``1 <= k < K``.
        n_bins: Calibration bins.

    Returns:
        The metrics document (plain Python types, JSON-serialisable, None for undefined values).
    """
    y, p = validate_inputs(y_true, proba, classes)
    n, n_classes = p.shape
    class_names = [str(c) for c in classes]
    ks = sorted({int(k) for k in top_k if 1 <= int(k) < n_classes})
    codes, n_groups = encode_groups(None if groups is None else np.asarray(groups), n)
    est = _estimate(y, p, ks, n_bins, codes, n_boot, level, seed)
    cm = confusion_matrix(y, p.argmax(axis=1), n_classes)
    per_class = _per_class(est, cm, class_names)
    reliable = n_groups >= MIN_GROUPS_FOR_CI
    notes = _notes(class_names, est.covered, n_groups, n_boot, reliable)
    agreement = None
    if reader is not None:
        truth, predicted = [class_names[i] for i in y], [class_names[i] for i in p.argmax(axis=1)]
        agreement = reader_agreement(truth, predicted, reader, codes, class_names, n_boot, level, seed)
    return {
        "schema": SCHEMA,
        "classes": class_names,
        "n": int(n),
        "n_groups": int(n_groups),
        "overall": {name: _entry(est, name) for name in overall_names(n_classes, ks)},
        "per_class": per_class,
        "confusion_matrix": {"labels": class_names, "matrix": cm.astype(int).tolist()},
        "calibration": _calibration(p, y, n_bins),
        "agreement": agreement,
        "bootstrap": {
            "replicates": int(n_boot),
            "level": float(level),
            "unit": "group",
            "seed": int(seed),
            "reliable": bool(reliable),
        },
        "macro_over": [class_names[c] for c in np.flatnonzero(est.covered)],
        "notes": notes,
    }
