"""Point estimates of classification metrics, vectorised for the bootstrap.

Every count-based metric is computed from a (possibly weighted) confusion matrix of shape
``(..., K, K)`` (rows = true class, columns = predicted class), so the same function evaluates one
matrix or a stack of bootstrap matrices in a single numpy call. Where a ratio is 0/0 the result is
0.0, like scikit-learn's ``zero_division=0``.

Probability-based metrics (top-k accuracy, log loss, Brier score) are exposed as per-sample arrays
plus a weighted mean, so a bootstrap replicate is one matrix product. ROC AUC is one-vs-rest per
class through the Mann–Whitney rank formula, with a weighted variant for bootstrap replicates.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.stats import rankdata

PER_CLASS_METRICS: tuple[str, ...] = ("precision", "recall", "specificity", "npv", "f1", "jaccard")


def safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Divide elementwise, returning 0.0 where the denominator is 0.

    Args:
        num: Numerators.
        den: Denominators (broadcastable to ``num``).

    Returns:
        ``num / den`` as float64, with 0.0 where ``den == 0``.
    """
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    num, den = np.broadcast_arrays(num, den)
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def confusion_matrix(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """Confusion matrix (rows = true, columns = predicted), optionally weighted or batched.

    Args:
        y_true: Integer true classes, shape ``(N,)``, values in ``[0, n_classes)``.
        y_pred: Integer predicted classes, shape ``(N,)``.
        n_classes: Number of classes K.
        sample_weight: None (counts), weights of shape ``(N,)``, or a batch of weights of shape
            ``(B, N)`` (one row per bootstrap replicate).

    Returns:
        ``(K, K)`` int64 counts when unweighted, ``(K, K)`` float64 for 1-D weights, or
        ``(B, K, K)`` float64 for 2-D weights.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    cells = y_true * n_classes + y_pred
    size = n_classes * n_classes
    if sample_weight is None:
        return np.bincount(cells, minlength=size).reshape(n_classes, n_classes)
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.ndim == 1:
        return np.bincount(cells, weights=weights, minlength=size).reshape(n_classes, n_classes)
    indicator = sparse.csr_matrix(
        (np.ones(cells.size), (cells, np.arange(cells.size))), shape=(size, cells.size)
    )
    return np.asarray(indicator @ weights.T).T.reshape(weights.shape[0], n_classes, n_classes)


def class_counts(cm: np.ndarray) -> dict[str, np.ndarray]:
    """One-vs-rest counts per class from confusion matrices.

    Args:
        cm: Confusion matrices, shape ``(..., K, K)``.

    Returns:
        Dict with ``tp``, ``fp``, ``fn``, ``tn`` and ``support`` (true count), each ``(..., K)``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    total = support.sum(axis=-1, keepdims=True)
    fp = predicted - tp
    fn = support - tp
    tn = total - tp - fp - fn
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "support": support}


def per_class_metrics(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall (sensitivity), specificity, NPV, F1 and Jaccard.

    Args:
        cm: Confusion matrices, shape ``(..., K, K)``.

    Returns:
        Dict of arrays of shape ``(..., K)`` keyed by :data:`PER_CLASS_METRICS`, plus ``support``.
    """
    c = class_counts(cm)
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    return {
        "precision": safe_divide(tp, tp + fp),
        "recall": safe_divide(tp, tp + fn),
        "specificity": safe_divide(tn, tn + fp),
        "npv": safe_divide(tn, tn + fn),
        "f1": safe_divide(2.0 * tp, 2.0 * tp + fp + fn),
        "jaccard": safe_divide(tp, tp + fp + fn),
        "support": c["support"],
    }


def averaged_metrics(
    per_class: dict[str, np.ndarray], covered: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Macro (unweighted) and support-weighted averages of per-class metrics.

    Args:
        per_class: Output of :func:`per_class_metrics`.
        covered: Boolean ``(K,)``: the classes the macro average is over (by default all); a class with no
            true example in the evaluated data has no sensitivity or F1 and belongs outside it.

    Returns:
        Dict with ``macro_<name>`` and ``weighted_<name>`` for each name in
        :data:`PER_CLASS_METRICS`, each of shape ``(...)``.
    """
    support = per_class["support"]
    total = support.sum(axis=-1)
    out: dict[str, np.ndarray] = {}
    for name in PER_CLASS_METRICS:
        values = per_class[name]
        out[f"macro_{name}"] = values.mean(axis=-1) if covered is None else values[..., covered].mean(axis=-1)
        out[f"weighted_{name}"] = safe_divide((values * support).sum(axis=-1), total)
    return out


def accuracy(cm: np.ndarray) -> np.ndarray:
    """Fraction correct from confusion matrices ``(..., K, K)``; 0.0 for an empty matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    return safe_divide(np.trace(cm, axis1=-2, axis2=-1), cm.sum(axis=(-2, -1)))


def balanced_accuracy(cm: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present in the truth (as scikit-learn).

    Args:
        cm: Confusion matrices, shape ``(..., K, K)``.

    Returns:
        Balanced accuracy, shape ``(...)``; 0.0 when no class is present.
    """
    c = class_counts(cm)
    present = c["support"] > 0
    recall = safe_divide(c["tp"], c["support"])
    return safe_divide((recall * present).sum(axis=-1), present.sum(axis=-1))


def matthews_corrcoef(cm: np.ndarray) -> np.ndarray:
    """Multi-class Matthews correlation coefficient (Gorodkin's R_K), 0.0 where undefined.

    Args:
        cm: Confusion matrices, shape ``(..., K, K)``.

    Returns:
        MCC, shape ``(...)``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    t_sum = cm.sum(axis=-1)
    p_sum = cm.sum(axis=-2)
    n = t_sum.sum(axis=-1)
    correct = np.trace(cm, axis1=-2, axis2=-1)
    cov_tp = correct * n - (t_sum * p_sum).sum(axis=-1)
    cov_pp = n * n - (p_sum * p_sum).sum(axis=-1)
    cov_tt = n * n - (t_sum * t_sum).sum(axis=-1)
    return safe_divide(cov_tp, np.sqrt(cov_tt * cov_pp))


def cohen_kappa(cm: np.ndarray) -> np.ndarray:
    """Unweighted Cohen's kappa of two raters from their confusion matrices.

    Kappa is undefined when chance agreement is 1 (both raters use one and the same label only);
    it is then 0.0, like ``sklearn.metrics.cohen_kappa_score(..., replace_undefined_by=0.0)``.

    Args:
        cm: Confusion matrices, shape ``(..., K, K)``.

    Returns:
        Kappa, shape ``(...)``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=-1)
    cols = cm.sum(axis=-2)
    n = rows.sum(axis=-1)
    observed_disagreement = n - np.trace(cm, axis1=-2, axis2=-1)
    expected_disagreement = n - safe_divide((rows * cols).sum(axis=-1), n)
    defined = expected_disagreement > 0
    return np.where(defined, 1.0 - safe_divide(observed_disagreement, expected_disagreement), 0.0)


def top_k_hits(proba: np.ndarray, y_true: np.ndarray, k: int) -> np.ndarray:
    """Whether the true class is among the k highest-ranked classes of each sample.

    Ties are broken like ``sklearn.metrics.top_k_accuracy_score``: among equal scores the class
    with the higher index ranks first.

    Args:
        proba: Scores, shape ``(N, K)``.
        y_true: Integer true classes, shape ``(N,)``.
        k: Number of top classes counted as a hit.

    Returns:
        Boolean array, shape ``(N,)``.
    """
    proba = np.asarray(proba, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    true_score = proba[np.arange(proba.shape[0]), y_true][:, None]
    class_index = np.arange(proba.shape[1])[None, :]
    ahead = (proba > true_score) | ((proba == true_score) & (class_index > y_true[:, None]))
    return ahead.sum(axis=1) < k


def weighted_mean(values: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Mean of per-sample values, weighted by ``(N,)`` or batched ``(B, N)`` weights.

    Args:
        values: Per-sample values, shape ``(N,)``.
        sample_weight: None, ``(N,)`` or ``(B, N)`` weights.

    Returns:
        Scalar array, or shape ``(B,)`` for batched weights; 0.0 where the weights sum to 0.
    """
    values = np.asarray(values, dtype=np.float64)
    if sample_weight is None:
        return np.asarray(values.mean() if values.size else 0.0)
    weights = np.asarray(sample_weight, dtype=np.float64)
    return safe_divide(weights @ values, weights.sum(axis=-1))


def top_k_accuracy(
    proba: np.ndarray, y_true: np.ndarray, k: int, sample_weight: np.ndarray | None = None
) -> float:
    """Top-k accuracy (fraction of samples whose true class ranks within the top k)."""
    return float(weighted_mean(top_k_hits(proba, y_true, k), sample_weight))


def per_sample_log_loss(proba: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """Negative log-probability of the true class, clipped to ``[eps, 1 - eps]`` like scikit-learn."""
    proba = np.asarray(proba, dtype=np.float64)
    eps = np.finfo(np.float64).eps
    p_true = proba[np.arange(proba.shape[0]), np.asarray(y_true, dtype=np.int64)]
    return -np.log(np.clip(p_true, eps, 1.0 - eps))


def log_loss(proba: np.ndarray, y_true: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """Mean cross-entropy (natural log) of the true class probability."""
    return float(weighted_mean(per_sample_log_loss(proba, y_true), sample_weight))


def per_sample_brier(proba: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """Squared distance between each probability row and the one-hot truth, summed over classes."""
    proba = np.asarray(proba, dtype=np.float64)
    onehot = np.zeros_like(proba)
    onehot[np.arange(proba.shape[0]), np.asarray(y_true, dtype=np.int64)] = 1.0
    return ((proba - onehot) ** 2).sum(axis=1)


def brier_score(proba: np.ndarray, y_true: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """Multi-class Brier score: mean over samples of the sum over classes, range [0, 2].

    This equals ``sklearn.metrics.brier_score_loss(..., scale_by_half=False)``; for two classes it
    is twice the common binary Brier score.
    """
    return float(weighted_mean(per_sample_brier(proba, y_true), sample_weight))


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Binary ROC AUC by the Mann–Whitney rank formula with mid-ranks for ties.

    Args:
        scores: Scores, higher meaning more likely positive, shape ``(N,)``.
        positive: Boolean labels, shape ``(N,)``.

    Returns:
        The AUC, or None without at least one positive and one negative.
    """
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_auc_ovr(proba: np.ndarray, y_true: np.ndarray) -> list[float | None]:
    """One-vs-rest ROC AUC for every class (None where a class lacks positives or negatives).

    Args:
        proba: Scores, shape ``(N, K)``.
        y_true: Integer true classes, shape ``(N,)``.

    Returns:
        List of K AUCs.
    """
    proba = np.asarray(proba, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    return [roc_auc(proba[:, c], y_true == c) for c in range(proba.shape[1])]


def macro_auc(aucs: list[float | None]) -> float | None:
    """Mean of the defined per-class AUCs, or None when none is defined."""
    defined = [a for a in aucs if a is not None]
    return float(np.mean(defined)) if defined else None


def weighted_roc_auc(scores: np.ndarray, positive: np.ndarray, sample_weight: np.ndarray) -> np.ndarray:
    """ROC AUC under sample weights, batched over bootstrap replicates.

    With integer weights this equals the AUC of the data set in which every sample is repeated
    as often as its weight (ties count one half).

    Args:
        scores: Scores, shape ``(N,)``.
        positive: Boolean labels, shape ``(N,)``.
        sample_weight: Weights of shape ``(N,)`` or ``(B, N)``.

    Returns:
        AUCs of shape ``()`` or ``(B,)``, NaN where the positive or the negative weight is 0.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    weights = np.asarray(sample_weight, dtype=np.float64)
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    w = weights[..., order]
    pos = w * positive[order]
    neg = w - pos
    if sorted_scores.size and np.any(sorted_scores[1:] == sorted_scores[:-1]):
        starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
        pos = np.add.reduceat(pos, starts, axis=-1)
        neg = np.add.reduceat(neg, starts, axis=-1)
    neg_below = np.cumsum(neg, axis=-1) - neg
    numerator = (pos * (neg_below + 0.5 * neg)).sum(axis=-1)
    denominator = pos.sum(axis=-1) * neg.sum(axis=-1)
    return np.where(denominator > 0, safe_divide(numerator, denominator), np.nan)
