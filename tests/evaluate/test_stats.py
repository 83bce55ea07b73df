"""The comparison tests against published or SciPy/statsmodels reference values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from lablens.evaluate.stats import corrected_resampled_ttest, delong_test, holm, mcnemar_test


def test_corrected_ttest_reduces_to_scipy_paired_ttest_without_correction() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.8, 0.05, 10), rng.normal(0.78, 0.05, 10)
    res = corrected_resampled_ttest(a, b, n_train=1.0, n_test=0.0)
    ref = sps.ttest_rel(a, b)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-10)


def test_corrected_ttest_hand_computed_value() -> None:
    # d = 1..5: mean 3, var 2.5; J = 5, n_test/n_train = 1/4 → se = sqrt((0.2 + 0.25) * 2.5) = sqrt(1.125)
    res = corrected_resampled_ttest(np.arange(1, 6, dtype=float), np.zeros(5), n_train=400, n_test=100)
    assert res.statistic == pytest.approx(3 / np.sqrt(1.125), rel=1e-12)  # = 2·√2
    assert res.p_value == pytest.approx(2 * sps.t.sf(2 * np.sqrt(2), 4), rel=1e-12)
    assert res.detail["df"] == 4


def test_correction_makes_the_test_more_conservative() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.8, 0.03, 10), rng.normal(0.77, 0.03, 10)
    plain = corrected_resampled_ttest(a, b, 1.0, 0.0).p_value
    corrected = corrected_resampled_ttest(a, b, 900, 100).p_value
    assert corrected > plain


def test_mcnemar_matches_agresti_published_example() -> None:
    # Agresti, An Introduction to Categorical Data Analysis (2nd ed., 2007), chapter 10 (matched pairs):
    # approval of the Prime Minister's performance in two surveys of the same 1600 people, 794 / 150 / 86 / 570;
    # McNemar z = 4.17, z² = 17.36 (no continuity correction).
    from statsmodels.stats.contingency_tables import mcnemar

    table = np.array([[794, 150], [86, 570]])
    assert mcnemar(table, exact=False, correction=False).statistic == pytest.approx(17.356, abs=1e-3)
    a = np.repeat([True, True, False, False], table.ravel())
    b = np.repeat([True, False, True, False], table.ravel())
    res = mcnemar_test(a, b)
    # our wrapper applies the continuity correction: (|150 − 86| − 1)² / 236
    assert res.statistic == pytest.approx(63**2 / 236, rel=1e-12)
    assert res.p_value == pytest.approx(sps.chi2.sf(63**2 / 236, 1), rel=1e-9)
    assert res.detail["only_a_correct"] == 150 and res.detail["only_b_correct"] == 86


def test_mcnemar_exact_for_few_discordant_pairs() -> None:
    a = np.array([True] * 20 + [True] * 6 + [False] * 1)
    b = np.array([True] * 20 + [False] * 6 + [True] * 1)
    res = mcnemar_test(a, b)
    assert res.test == "McNemar (exact)"
    assert res.p_value == pytest.approx(sps.binomtest(1, 7, 0.5).pvalue, rel=1e-12)


def _delong_reference(y: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> tuple[float, float]:
    """DeLong et al. (1988) written from the paper's definitions with explicit O(m·n) kernels."""
    pos, neg = y == 1, y == 0
    m, n = pos.sum(), neg.sum()

    def comps(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        return psi.mean(1), psi.mean(0)  # V10 per positive, V01 per negative

    v10a, v01a = comps(s1)
    v10b, v01b = comps(s2)
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    c = s10 / m + s01 / n
    diff = v10a.mean() - v10b.mean()
    z = diff / np.sqrt(c[0, 0] + c[1, 1] - 2 * c[0, 1])
    return float(z), float(2 * sps.norm.sf(abs(z)))


def test_delong_matches_definition_and_sklearn_auc() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    s1 = y * 1.0 + rng.normal(0, 1.0, 120)
    s2 = np.round(y * 0.6 + rng.normal(0, 1.0, 120), 1)  # rounded: ties exercise the midranks
    res = delong_test(y == 1, s1, s2)
    assert res.detail["auc_a"] == pytest.approx(roc_auc_score(y, s1), rel=1e-12)
    assert res.detail["auc_b"] == pytest.approx(roc_auc_score(y, s2), rel=1e-12)
    z, p = _delong_reference(y, s1, s2)
    assert res.statistic == pytest.approx(z, rel=1e-10)
    assert res.p_value == pytest.approx(p, rel=1e-10)


def test_delong_identical_scores_give_no_difference() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    res = delong_test(y == 1, s, s)
    assert res.statistic == 0.0 and res.p_value == 1.0


def test_holm_hand_computed() -> None:
    # sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 → max(0.06, 0.04) = 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
