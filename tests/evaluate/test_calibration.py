"""Calibration: ECE, reliability bins and temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax
from scipy.special import softmax as scipy_softmax

from lablens.evaluate.calibration import (
    TEMPERATURE_BOUNDS,
    apply_temperature,
    batched_ece,
    bin_index,
    confidence_and_correct,
    cross_entropy,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    softmax,
    temperature_nll,
)


def _sample_labels(proba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cumulative = proba.cumsum(axis=1)
    u = rng.random((proba.shape[0], 1))
    return np.minimum((u > cumulative).sum(axis=1), proba.shape[1] - 1)


def _logits_at_temperature(n: int, k: int, temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose calibrated probabilities are ``softmax(logits / temperature)``."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(scale=2.0, size=(n, k))
    y = _sample_labels(scipy_softmax(true_logits, axis=1), rng)
    return true_logits * temperature, y


def test_softmax_is_stable_and_correct() -> None:
    logits = np.array([[1000.0, 999.0, -1000.0], [0.0, 0.0, 0.0]])
    p = softmax(logits)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p, scipy_softmax(logits, axis=1), rtol=1e-12)
    np.testing.assert_allclose(apply_temperature(logits, 1.0), p)
    np.testing.assert_allclose(apply_temperature(logits, 2.0), scipy_softmax(logits / 2.0, axis=1))
    with pytest.raises(ValueError):
        apply_temperature(logits, 0.0)


def test_cross_entropy_matches_log_softmax_and_stays_positive() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=5.0, size=(300, 4))
    y = rng.integers(0, 4, 300)
    expected = -log_softmax(logits, axis=1)[np.arange(300), y]
    np.testing.assert_allclose(cross_entropy(logits, y), expected, rtol=1e-10, atol=1e-12)
    tiny = cross_entropy(np.array([[100.0, 0.0], [200.0, 0.0]]), np.array([0, 0]))
    assert tiny[0] == pytest.approx(np.exp(-100.0)) and 0 < tiny[1] < tiny[0]


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_known_temperature(temperature: float) -> None:
    logits, y = _logits_at_temperature(20000, 4, temperature, seed=int(temperature * 10))
    fitted = fit_temperature(logits, y)
    assert fitted == pytest.approx(temperature, rel=0.05)
    # It is a minimum of the NLL.
    nll = temperature_nll(np.log(fitted), logits, y)
    assert nll <= temperature_nll(np.log(fitted * 1.1), logits, y)
    assert nll <= temperature_nll(np.log(fitted / 1.1), logits, y)


def test_temperature_scaling_reduces_ece_of_overconfident_logits() -> None:
    logits, y = _logits_at_temperature(20000, 5, 3.0, seed=1)
    before = expected_calibration_error(softmax(logits), y)
    after = expected_calibration_error(apply_temperature(logits, fit_temperature(logits, y)), y)
    assert before > 0.1
    assert after < 0.02


def test_fit_temperature_edge_cases() -> None:
    lo, hi = TEMPERATURE_BOUNDS
    separated = np.array([[5.0, -5.0], [-5.0, 5.0], [4.0, 0.0]])
    assert fit_temperature(separated, np.array([0, 1, 0])) == pytest.approx(lo, rel=1e-3)
    always_wrong = np.array([[5.0, -5.0], [-5.0, 5.0]])
    assert fit_temperature(always_wrong, np.array([1, 0])) == pytest.approx(hi, rel=1e-3)
    single = fit_temperature(np.array([[1.0, 0.5, -0.2]]), np.array([1]))
    assert lo <= single <= hi and np.isfinite(single)
    assert fit_temperature(np.zeros((4, 3)), np.array([0, 1, 2, 0])) == 1.0
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, int))
    with pytest.raises(ValueError):
        fit_temperature(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(ValueError):
        fit_temperature(np.array([[0.0, 1.0]]), np.array([2]))


def test_ece_of_calibrated_data_is_near_zero() -> None:
    rng = np.random.default_rng(2)
    proba = rng.dirichlet(np.full(4, 0.7), size=50000)
    y = _sample_labels(proba, rng)
    assert expected_calibration_error(proba, y) < 0.01
    # Overconfident version of the same predictions is clearly miscalibrated.
    sharp = softmax(np.log(proba + 1e-12) * 3.0)
    assert expected_calibration_error(sharp, y) > 0.05


def test_ece_hand_example_and_bins() -> None:
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55], [0.5, 0.5]])
    y = np.array([0, 1, 1, 0, 0])
    # 2 bins (0, .5], (.5, 1]: bin 0 holds conf 0.5 (correct); bin 1 holds 0.9, 0.8, 0.7, 0.55
    # with accuracy 2/4 and mean confidence 0.7375.
    expected = (1 * abs(1.0 - 0.5) + 4 * abs(0.5 - 0.7375)) / 5
    assert expected_calibration_error(proba, y, n_bins=2) == pytest.approx(expected)
    bins = reliability_bins(proba, y, n_bins=2)
    assert [b["count"] for b in bins] == [1, 4]
    assert bins[1]["confidence"] == pytest.approx(0.7375) and bins[1]["accuracy"] == 0.5
    assert (bins[0]["lo"], bins[0]["hi"], bins[1]["hi"]) == (0.0, 0.5, 1.0)


def test_bin_edges_are_right_closed() -> None:
    idx = bin_index(np.array([0.0, 0.2, 0.2000001, 0.6, 1.0]), 5)
    np.testing.assert_array_equal(idx, [0, 0, 1, 2, 4])


def test_reliability_bins_consistent_with_ece() -> None:
    rng = np.random.default_rng(3)
    proba = rng.dirichlet(np.ones(3), size=500)
    y = rng.integers(0, 3, 500)
    bins = reliability_bins(proba, y, n_bins=10)
    assert len(bins) == 10 and sum(b["count"] for b in bins) == 500
    ece = sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / 500
    assert expected_calibration_error(proba, y, n_bins=10) == pytest.approx(ece)
    empty = [b for b in bins if b["count"] == 0]
    assert empty and all(b["confidence"] is None and b["accuracy"] is None for b in empty)


def test_batched_ece_equals_ece_of_repeated_samples() -> None:
    rng = np.random.default_rng(4)
    proba = rng.dirichlet(np.ones(3), size=200)
    y = rng.integers(0, 3, 200)
    confidence, correct = confidence_and_correct(proba, y)
    weights = rng.integers(0, 3, (4, 200)).astype(float)
    batch = batched_ece(confidence, correct, 15, weights)
    for b in range(4):
        rep = np.repeat(np.arange(200), weights[b].astype(int))
        assert batch[b] == pytest.approx(expected_calibration_error(proba[rep], y[rep]), abs=1e-12)
