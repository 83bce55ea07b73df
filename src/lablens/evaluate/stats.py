"""Tests that compare two methods evaluated on the same folds and the same images.

- :func:`corrected_resampled_ttest` — Nadeau & Bengio (2003): a paired t-test on per-fold scores whose
  variance is inflated by ``n_test / n_train`` because cross-validation folds share training data (the plain
  paired t-test is far too liberal there). Bouckaert & Frank (2004) recommend it for repeated k-fold.
- :func:`mcnemar_test` — McNemar's test on pooled out-of-fold predictions (each image predicted once per
  repeat by each method): exact binomial when the discordant count is small, χ² with continuity correction
  otherwise; computed by statsmodels.
- :func:`delong_test` — DeLong, DeLong & Clarke-Pearson (1988) for two correlated binary ROC AUCs, in Sun &
  Xu's (2014) midrank form. Written here because neither SciPy nor statsmodels nor scikit-learn provides it.
- :func:`holm` — Holm's step-down correction of a family of p-values (statsmodels).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps
from scipy.stats import rankdata
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

EXACT_BELOW = 25  # discordant pairs below which McNemar uses the exact binomial test


@dataclass(frozen=True)
class TestResult:
    """One two-sided test: statistic, p-value and what it compared."""

    test: str
    statistic: float
    p_value: float
    estimate: float  # the difference the test is about (a − b)
    detail: dict

    def to_dict(self) -> dict:
        return asdict(self)


def corrected_resampled_ttest(
    scores_a: np.ndarray, scores_b: np.ndarray, n_train: float, n_test: float
) -> TestResult:
    """Nadeau–Bengio corrected resampled t-test of per-fold scores ``a`` vs ``b`` (same folds, same order).

    ``t = mean(d) / sqrt((1/J + n_test/n_train) · var(d))`` with ``J`` folds (all repeats) and ``J − 1``
    degrees of freedom; ``n_train``/``n_test`` are the (average) training and test sizes of a fold.
    """
    d = np.asarray(scores_a, dtype=np.float64) - np.asarray(scores_b, dtype=np.float64)
    j = d.size
    if j < 2:
        raise ValueError("the corrected resampled t-test needs at least 2 folds")
    mean, var = float(d.mean()), float(d.var(ddof=1))
    se = np.sqrt((1.0 / j + n_test / n_train) * var)
    if se == 0.0:
        t, p = (0.0, 1.0) if mean == 0.0 else (float(np.sign(mean) * np.inf), 0.0)
    else:
        t = mean / se
        p = float(2 * sps.t.sf(abs(t), df=j - 1))
    return TestResult(
        "corrected resampled t",
        float(t),
        p,
        mean,
        {"folds": j, "df": j - 1, "test_train_ratio": n_test / n_train},
    )


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray) -> TestResult:
    """McNemar's test on paired right/wrong outcomes of two methods on the same images."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("McNemar needs the two methods' outcomes on the same images")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    table = [[int((a & b).sum()), only_a], [only_b, int((~a & ~b).sum())]]
    exact = only_a + only_b < EXACT_BELOW
    res = mcnemar(table, exact=exact, correction=True)
    estimate = (only_a - only_b) / max(a.size, 1)  # accuracy difference a − b
    return TestResult(
        "McNemar (exact)" if exact else "McNemar (χ², continuity-corrected)",
        float(res.statistic),
        float(res.pvalue),
        float(estimate),
        {"only_a_correct": only_a, "only_b_correct": only_b, "n": int(a.size)},
    )


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's structural components V10 (per positive) and V01 (per negative), via midranks."""
    m, n = len(pos), len(neg)
    all_ranks = rankdata(np.concatenate([pos, neg]))
    pos_ranks, neg_ranks = rankdata(pos), rankdata(neg)
    v10 = (all_ranks[:m] - pos_ranks) / n  # share of negatives below each positive (ties ½)
    v01 = 1.0 - (all_ranks[m:] - neg_ranks) / m  # share of positives above each negative
    auc = float(v10.mean())
    return auc, v10, v01


def delong_test(positive: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> TestResult:
    """DeLong's test that two scores on the same images have equal ROC AUC for a binary outcome."""
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        raise ValueError("DeLong's test needs both positive and negative images")
    aucs, v10s, v01s = [], [], []
    for s in (np.asarray(scores_a, float), np.asarray(scores_b, float)):
        auc, v10, v01 = _placements(s[positive], s[~positive])
        aucs.append(auc)
        v10s.append(v10)
        v01s.append(v01)
    m, n = int(positive.sum()), int((~positive).sum())
    s10 = np.cov(np.vstack(v10s))
    s01 = np.cov(np.vstack(v01s))
    cov = s10 / m + s01 / n
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = aucs[0] - aucs[1]
    if var <= 0:
        z, p = (0.0, 1.0) if diff == 0 else (float(np.sign(diff) * np.inf), 0.0)
    else:
        z = diff / np.sqrt(var)
        p = float(2 * sps.norm.sf(abs(z)))
    return TestResult(
        "DeLong",
        float(z),
        p,
        float(diff),
        {
            "auc_a": aucs[0],
            "auc_b": aucs[1],
            "var_a": float(cov[0, 0]),
            "var_b": float(cov[1, 1]),
            "positives": m,
            "negatives": n,
        },
    )


def holm(p_values: list[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (same order as given)."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p
    return multipletests(p, method="holm")[1]
