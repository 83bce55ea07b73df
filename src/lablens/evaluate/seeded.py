"""Scores of one method trained with several seeds, on the same test images: the seed-averaged value of each
metric with a group-bootstrap interval that covers both sources of variation a lab cares about — which test
patients were drawn (resampled by group) and which seed trained the model (averaged per replicate, and the
per-seed values kept) — and paired tests between methods on each image's majority vote over seeds.

Metrics: for the class of interest ``rare``, sensitivity (recall), PPV (precision) and F1; over all classes,
macro F1 and accuracy. A metric whose denominator is empty in a replicate is NaN there and left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lablens.evaluate.bootstrap import encode_groups, percentile_interval, replicate_weights
from lablens.evaluate.stats import holm, mcnemar_test

METRICS = ("sensitivity", "ppv", "f1", "macro_f1", "accuracy")


def _counts(y: np.ndarray, pred: np.ndarray, n_classes: int, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Weighted true positives, predicted and actual counts per class: ``(B, K)`` each (``weights``: B×N)."""
    hit = np.zeros((len(y), n_classes))
    hit[np.arange(len(y)), y] = y == pred
    actual = np.eye(n_classes)[y]
    predicted = np.eye(n_classes)[pred]
    return weights @ hit, weights @ predicted, weights @ actual


def _metrics(tp: np.ndarray, predicted: np.ndarray, actual: np.ndarray, rare: int) -> dict[str, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / actual
        precision = tp / predicted
        f1 = 2 * tp / (actual + predicted)
        present = actual > 0
        macro = np.where(present, np.nan_to_num(f1), 0.0).sum(-1) / present.sum(-1)
        accuracy = tp.sum(-1) / actual.sum(-1)
    return {
        "sensitivity": recall[..., rare],
        "ppv": precision[..., rare],
        "f1": np.where(actual[..., rare] + predicted[..., rare] > 0, f1[..., rare], np.nan),
        "macro_f1": macro,
        "accuracy": accuracy,
    }


def seeded_scores(
    y: np.ndarray,
    predictions: Sequence[np.ndarray],
    rare: int,
    n_classes: int,
    *,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Each metric as ``{"value": seed mean, "ci": [lo, hi], "per_seed": [...]}``.

    ``predictions``: one array of predicted class indices per training seed, on the test images ``y``.
    """
    y = np.asarray(y, np.int64)
    preds = [np.asarray(p, np.int64) for p in predictions]
    ones = np.ones((1, len(y)))
    per_seed = [_metrics(*_counts(y, p, n_classes, ones), rare) for p in preds]
    codes, n_groups = encode_groups(groups, len(y))
    replicates: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    for weights in replicate_weights(codes, n_groups, n_boot, seed):
        block = [_metrics(*_counts(y, p, n_classes, weights), rare) for p in preds]
        for m in METRICS:
            with np.errstate(invalid="ignore"):
                replicates[m].append(np.mean([b[m] for b in block], axis=0))
    out = {}
    for m in METRICS:
        values = [float(s[m][0]) for s in per_seed]
        interval = percentile_interval(np.concatenate(replicates[m]), level) if n_boot else None
        ci = None
        if interval is not None and np.isfinite(interval.lo) and np.isfinite(interval.hi):
            ci = [float(interval.lo), float(interval.hi)]
        finite = [v for v in values if np.isfinite(v)]
        out[m] = {
            "value": float(np.mean(finite)) if finite else None,
            "ci": ci,
            "per_seed": [v if np.isfinite(v) else None for v in values],
        }
    return out


def majority_vote(predictions: Sequence[np.ndarray], n_classes: int) -> np.ndarray:
    """Each image's most frequent prediction over seeds (ties: the lowest class index)."""
    votes = np.zeros((len(predictions[0]), n_classes), np.int64)
    for p in predictions:
        votes[np.arange(len(p)), np.asarray(p)] += 1
    return votes.argmax(1)


def paired_tests(
    y: np.ndarray, votes: dict[str, np.ndarray], reference: str, rare: int
) -> list[dict[str, Any]]:
    """McNemar of every method against ``reference`` on the same test images (majority votes over seeds):
    on all images (right/wrong) and on the images of class ``rare`` (found/missed: a sensitivity difference).
    Holm-adjusted across methods, per family."""
    y = np.asarray(y)
    rows = []
    for name, pred in votes.items():
        if name == reference:
            continue
        overall = mcnemar_test(pred == y, votes[reference] == y)
        on_rare = y == rare
        rare_test = mcnemar_test(pred[on_rare] == rare, votes[reference][on_rare] == rare)
        rows.append(
            {
                "method": name,
                "against": reference,
                "accuracy_difference": overall.estimate,
                "p": overall.p_value,
                "sensitivity_difference": rare_test.estimate,
                "p_rare": rare_test.p_value,
                "test": overall.test,
            }
        )
    for key in ("p", "p_rare"):
        adjusted = holm([r[key] for r in rows]) if rows else []
        for r, a in zip(rows, adjusted, strict=True):
            r[f"{key}_holm"] = float(a)
    return rows
