"""Calibration: expected calibration error, reliability-diagram bins and temperature scaling.

Confidence is the maximum class probability of a sample; bins are equal-width on [0, 1] and
right-closed, ``(lo, hi]``, with a confidence of exactly 0 counted in the first bin.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from lablens.evaluate.metrics import safe_divide

#: Temperatures returned by :func:`fit_temperature` are clamped to this range.
TEMPERATURE_BOUNDS: tuple[float, float] = (0.05, 20.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Class probabilities ``softmax(logits / T)``.

    Args:
        logits: Logits, shape ``(N, K)``.
        temperature: Positive temperature T (T > 1 softens, T < 1 sharpens).

    Returns:
        Probabilities, shape ``(N, K)``.

    Raises:
        ValueError: If the temperature is not a positive finite number.
    """
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be positive and finite, got {temperature}")
    return softmax(np.asarray(logits, dtype=np.float64) / temperature)


def cross_entropy(logits: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """Per-sample ``-log softmax(logits)[y]``, accurate even when it is far below machine epsilon.

    With ``d = logits - logits[y]`` the loss is ``log(1 + sum_{j != y} exp(d_j))``; it is computed
    with ``log1p`` when the true class has the largest logit, so confidently correct samples keep
    a strictly positive, strictly ordered loss (needed to fit temperatures on separable data).
    """
    z = np.asarray(logits, dtype=np.float64)
    rows = np.arange(z.shape[0])
    d = z - z[rows, y_true][:, None]
    d[rows, y_true] = -np.inf
    top = np.maximum(d.max(axis=1), 0.0)
    rest = np.exp(d - top[:, None]).sum(axis=1)
    return top + np.log1p(np.expm1(-top) + rest)


def temperature_nll(log_temperature: float, logits: np.ndarray, y_true: np.ndarray) -> float:
    """Mean negative log-likelihood of ``softmax(logits / exp(log_temperature))``."""
    z = np.asarray(logits, dtype=np.float64) / np.exp(log_temperature)
    return float(np.mean(cross_entropy(z, y_true)))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Temperature minimising the validation NLL, searched over log T in a bounded interval.

    The NLL is unimodal in log T, so a bounded Brent search finds the minimum; the interval ends
    are also compared, so perfectly separated data (NLL decreasing as T -> 0) returns the lower
    bound and uninformative data the best bound instead of an arbitrary interior point. Logits
    that are constant within every row carry no information and give T = 1.

    Args:
        logits: Validation logits, shape ``(N, K)``.
        y_true: Integer true classes, shape ``(N,)``.

    Returns:
        The temperature, within :data:`TEMPERATURE_BOUNDS`.

    Raises:
        ValueError: On empty input, mismatched shapes, non-finite logits or out-of-range labels.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    if z.ndim != 2 or z.shape[0] == 0 or y.shape != (z.shape[0],):
        raise ValueError(f"need logits (N, K) with N > 0 and y_true (N,), got {z.shape} and {y.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits must be finite")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError("y_true contains class indices outside [0, K)")
    if np.all(np.ptp(z, axis=1) == 0):
        return 1.0
    lo, hi = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    result = minimize_scalar(
        temperature_nll, bounds=(lo, hi), args=(z, y), method="bounded", options={"xatol": 1e-6}
    )
    candidates = [float(result.x), lo, hi]
    losses = [temperature_nll(c, z, y) for c in candidates]
    best = candidates[int(np.argmin(losses))]
    return float(np.clip(np.exp(best), *TEMPERATURE_BOUNDS))


def bin_edges(n_bins: int) -> np.ndarray:
    """The ``n_bins + 1`` equal-width bin edges on [0, 1]."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return np.linspace(0.0, 1.0, n_bins + 1)


def bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each confidence: ``i`` such that ``edges[i] < c <= edges[i + 1]`` (0 goes to bin 0)."""
    edges = bin_edges(n_bins)
    idx = np.searchsorted(edges, np.asarray(confidence, dtype=np.float64), side="left") - 1
    return np.clip(idx, 0, n_bins - 1)


def confidence_and_correct(proba: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max probability and whether the argmax equals the truth, per sample.

    Args:
        proba: Probabilities, shape ``(N, K)``.
        y_true: Integer true classes, shape ``(N,)``.

    Returns:
        ``(confidence, correct)`` as float64 arrays of shape ``(N,)``.
    """
    p = np.asarray(proba, dtype=np.float64)
    correct = (p.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    return p.max(axis=1), correct


def batched_ece(
    confidence: np.ndarray,
    correct: np.ndarray,
    n_bins: int = 15,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """ECE from per-sample confidence and correctness, optionally under (batched) weights.

    ``ECE = sum_b |sum_{i in b} w_i (correct_i - conf_i)| / sum_i w_i``, which equals the
    bin-count-weighted mean of ``|accuracy_b - confidence_b|``.

    Args:
        confidence: Shape ``(N,)``.
        correct: Shape ``(N,)`` (0/1).
        n_bins: Number of equal-width bins.
        sample_weight: None, ``(N,)`` or ``(B, N)`` weights.

    Returns:
        Scalar array, or shape ``(B,)``; 0.0 where the weights sum to 0.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    gap = np.asarray(correct, dtype=np.float64) - confidence
    idx = bin_index(confidence, n_bins)
    gap_by_bin = np.zeros((confidence.size, n_bins))
    gap_by_bin[np.arange(confidence.size), idx] = gap
    weights = np.ones(confidence.size) if sample_weight is None else np.asarray(sample_weight, np.float64)
    total = weights.sum(axis=-1)
    per_bin = np.abs(weights @ gap_by_bin).sum(axis=-1)
    return safe_divide(per_bin, total)


def expected_calibration_error(proba: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error on the max probability with equal-width bins.

    Args:
        proba: Probabilities, shape ``(N, K)``.
        y_true: Integer true classes, shape ``(N,)``.
        n_bins: Number of bins.

    Returns:
        ECE in [0, 1] (0.0 for empty input).
    """
    confidence, correct = confidence_and_correct(proba, y_true)
    return float(batched_ece(confidence, correct, n_bins))


def reliability_bins(proba: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> list[dict]:
    """Reliability-diagram bins.

    Args:
        proba: Probabilities, shape ``(N, K)``.
        y_true: Integer true classes, shape ``(N,)``.
        n_bins: Number of equal-width bins.

    Returns:
        One dict per bin, ``{"lo", "hi", "count", "confidence", "accuracy"}``, where confidence
        and accuracy are the bin means (None for an empty bin).
    """
    confidence, correct = confidence_and_correct(proba, y_true)
    edges = bin_edges(n_bins)
    idx = bin_index(confidence, n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    bins = []
    for b in range(n_bins):
        n = int(counts[b])
        bins.append(
            {
                "lo": float(edges[b]),
                "hi": float(edges[b + 1]),
                "count": n,
                "confidence": float(conf_sum[b] / n) if n else None,
                "accuracy": float(correct_sum[b] / n) if n else None,
            }
        )
    return bins
