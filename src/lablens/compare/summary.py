"""From per-fold results to what a comparison reports: mean ± sd and 95 % CI of every metric, the rank
table, pairwise tests with Holm correction, pooled confusion matrices and averaged feature importances.

Confidence intervals of a cross-validated mean use the same Nadeau–Bengio variance correction as the t-test
(folds share training data, so the naive interval is too narrow): ``mean ± t(J−1) · sqrt((1/J + n_test/n_train)
· sd²)``. McNemar and DeLong use the pooled out-of-fold predictions of the first repeat, where every image is
predicted exactly once by every method.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from scipy import stats as sps

from lablens.compare.folds import repeat_of
from lablens.compare.runner import FOLD_METRICS, FoldResult
from lablens.evaluate.metrics import confusion_matrix
from lablens.evaluate.stats import corrected_resampled_ttest, delong_test, holm, mcnemar_test

LOWER_IS_BETTER = {"log_loss", "brier", "ece"}


def metric_summary(values: list[float | None], n_train: float, n_test: float, level: float = 0.95) -> dict:
    """Mean, sd, corrected CI and the per-fold values of one metric."""
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    out: dict[str, Any] = {"mean": None, "sd": None, "ci": None, "values": values}
    if finite.size == 0:
        return out
    out["mean"] = float(finite.mean())
    if finite.size > 1:
        sd = float(finite.std(ddof=1))
        half = sps.t.ppf(0.5 + level / 2, finite.size - 1) * np.sqrt(
            (1 / finite.size + n_test / n_train) * sd**2
        )
        out["sd"] = sd
        out["ci"] = [float(finite.mean() - half), float(finite.mean() + half)]
    return out


def pooled_predictions(results: list[FoldResult], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities of the first repeat (``n × K``) and a mask of the rows predicted."""
    first = [r for r in results if repeat_of(r.fold) == 1]
    k = first[0].proba.shape[1]
    proba = np.full((n, k), np.nan)
    for r in first:
        proba[r.test] = r.proba
    return proba, ~np.isnan(proba[:, 0])


def _ranks(table: list[dict], metric: str) -> None:
    """Add ``rank`` (1 = best by mean of ``metric``) to each row, ties sharing the better rank."""
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    keyed = [
        sign
        * (row["metrics"][metric]["mean"] if row["metrics"][metric]["mean"] is not None else -np.inf * sign)
        for row in table
    ]
    ranks = sps.rankdata(keyed, method="min")
    for row, rank in zip(table, ranks, strict=True):
        row["rank"] = int(rank)


def mean_fold_ranks(results: list[FoldResult], methods: list[str], metric: str) -> dict[str, float]:
    """Average over folds of each method's rank on that fold (Demšar's average rank)."""
    folds = sorted({r.fold for r in results})
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    ranks = {m: [] for m in methods}
    for f in folds:
        scores = {r.method: r.metrics.get(metric) for r in results if r.fold == f}
        vals = [sign * (scores.get(m) if scores.get(m) is not None else np.inf * -sign) for m in methods]
        for m, rk in zip(methods, sps.rankdata(vals), strict=True):
            ranks[m].append(float(rk))
    return {m: float(np.mean(v)) for m, v in ranks.items()}


def pairwise_tests(
    results: list[FoldResult], methods: list[str], y: np.ndarray, metric: str, n_train: float, n_test: float
) -> list[dict]:
    """Every pair of methods: corrected t on ``metric``, McNemar on pooled predictions, DeLong if binary;
    Holm correction within each test family."""
    by_method = {m: sorted([r for r in results if r.method == m], key=lambda r: r.fold) for m in methods}
    pooled = {m: pooled_predictions(by_method[m], len(y)) for m in methods}
    rows = []
    for a, b in itertools.combinations(methods, 2):
        sa = [r.metrics.get(metric) for r in by_method[a]]
        sb = [r.metrics.get(metric) for r in by_method[b]]
        row: dict[str, Any] = {"a": a, "b": b}
        if len(sa) >= 2 and all(v is not None for v in sa + sb):
            row["ttest"] = corrected_resampled_ttest(
                np.asarray(sa), np.asarray(sb), n_train, n_test
            ).to_dict()
        (pa, ma), (pb, mb) = pooled[a], pooled[b]
        rows_ok = ma & mb
        row["mcnemar"] = mcnemar_test(
            pa[rows_ok].argmax(1) == y[rows_ok], pb[rows_ok].argmax(1) == y[rows_ok]
        ).to_dict()
        if pa.shape[1] == 2 and len(np.unique(y[rows_ok])) == 2:
            row["delong"] = delong_test(y[rows_ok] == 1, pa[rows_ok, 1], pb[rows_ok, 1]).to_dict()
        rows.append(row)
    for family in ("ttest", "mcnemar", "delong"):
        present = [r for r in rows if family in r]
        for r, p in zip(present, holm([r[family]["p_value"] for r in present]), strict=True):
            r[family]["p_holm"] = float(p)
    return rows


def average_importances(results: list[FoldResult], top: int = 25) -> dict[str, list[tuple[str, float]]]:
    """Mean feature importance over folds, top ``top`` features, per tree-based method."""
    out = {}
    for m in dict.fromkeys(r.method for r in results):
        imps = [r.importances for r in results if r.method == m and r.importances]
        if not imps:
            continue
        names = list(imps[0])
        mean = np.mean([[imp[n] for n in names] for imp in imps], axis=0)
        order = np.argsort(-mean)[:top]
        out[m] = [(names[i], float(mean[i])) for i in order]
    return out


def summarise(
    results: list[FoldResult],
    methods: list[str],
    y: np.ndarray,
    classes: list[str],
    primary: str,
    level: float = 0.95,
) -> dict[str, Any]:
    """The comparison document (JSON-ready)."""
    n_train = float(np.mean([r.n_train for r in results]))
    n_test = float(np.mean([len(r.test) for r in results]))
    table = []
    for m in methods:
        mine = [r for r in results if r.method == m]
        metrics = {
            k: metric_summary([r.metrics.get(k) for r in mine], n_train, n_test, level) for k in FOLD_METRICS
        }
        proba, mask = pooled_predictions(mine, len(y))
        cm = confusion_matrix(y[mask], proba[mask].argmax(1), len(classes))
        table.append(
            {
                "method": m,
                "metrics": metrics,
                "fit_s": float(np.mean([r.fit_s for r in mine])),
                "predict_s": float(np.mean([r.predict_s for r in mine])),
                "confusion_matrix": cm.astype(int).tolist(),
                "best_params": [r.best_params for r in mine if r.best_params],
            }
        )
    _ranks(table, primary)
    fold_ranks = mean_fold_ranks(results, methods, primary)
    for row in table:
        row["mean_fold_rank"] = fold_ranks[row["method"]]
    table.sort(key=lambda r: (r["rank"], r["mean_fold_rank"]))
    return {
        "schema": "lablens.compare/1",
        "classes": classes,
        "primary_metric": primary,
        "level": level,
        "folds": sorted({r.fold for r in results}),
        "n_train_mean": n_train,
        "n_test_mean": n_test,
        "table": table,
        "winner": table[0]["method"],
        "pairwise": pairwise_tests(results, methods, y, primary, n_train, n_test),
        "importances": average_importances(results),
        "per_fold": [
            {"method": r.method, "fold": r.fold, "fit_s": r.fit_s, "predict_s": r.predict_s, **r.metrics}
            for r in results
        ],
    }
