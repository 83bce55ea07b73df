"""Group bootstrap: groups stay whole, draws are reproducible, CIs widen under clustering, it is fast."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lablens.evaluate.bootstrap import (
    bootstrap_replicates,
    ci_entry,
    draw_group_counts,
    encode_groups,
    group_bootstrap,
    group_bootstrap_indices,
    percentile_interval,
    replicate_weights,
)
from lablens.evaluate.metrics import weighted_mean, weighted_roc_auc
from lablens.evaluate.summary import classification_statistic


def _mean_statistic(values: np.ndarray):
    return lambda w: {"mean": weighted_mean(values, w)}


def test_encode_groups() -> None:
    codes, n = encode_groups(np.array(["p2", "p1", "p2", "p3"]), 4)
    assert n == 3
    np.testing.assert_array_equal(codes, [1, 0, 1, 2])
    codes, n = encode_groups(None, 3)
    assert n == 3
    np.testing.assert_array_equal(codes, [0, 1, 2])
    _, n = encode_groups(np.array([1, "a", 1], dtype=object), 3)
    assert n == 2
    with pytest.raises(ValueError):
        encode_groups(np.array([1, 2]), 3)


def test_each_replicate_draws_n_groups() -> None:
    counts = draw_group_counts(7, 50, np.random.default_rng(0))
    assert counts.shape == (50, 7)
    np.testing.assert_array_equal(counts.sum(axis=1), 7)
    assert counts.min() >= 0
    assert (counts == 0).any()  # some groups left out, some drawn repeatedly
    assert (counts > 1).any()


def test_groups_are_never_split() -> None:
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 30, 400)
    codes, n_groups = encode_groups(groups, 400)
    for weights in replicate_weights(codes, n_groups, 200, seed=3):
        for g in range(n_groups):
            members = weights[:, codes == g]
            # Every image of a group has the same multiplicity: all or none of the group comes along.
            assert np.all(members == members[:, :1])
        group_sizes = np.bincount(codes, minlength=n_groups)
        group_counts = np.stack(
            [w[np.argmax(codes == np.arange(n_groups)[:, None], axis=1)] for w in weights]
        )
        np.testing.assert_array_equal(weights.sum(axis=1), group_counts @ group_sizes)
        np.testing.assert_array_equal(group_counts.sum(axis=1), n_groups)


def test_indices_match_weights_and_keep_groups_whole() -> None:
    groups = np.repeat(np.arange(12), np.arange(1, 13))
    n = groups.size
    indices = list(group_bootstrap_indices(groups, n, n_boot=40, seed=5))
    codes, n_groups = encode_groups(groups, n)
    weights = np.vstack(list(replicate_weights(codes, n_groups, 40, seed=5)))
    assert len(indices) == 40
    for idx, w in zip(indices, weights, strict=True):
        mult = np.bincount(idx, minlength=n)
        np.testing.assert_array_equal(mult, w)
        for g in range(n_groups):
            assert len(set(mult[groups == g])) == 1


def test_reproducible_and_block_size_independent() -> None:
    values = np.random.default_rng(2).random(300)
    groups = np.arange(300) // 3
    stat = _mean_statistic(values)
    a = bootstrap_replicates(stat, groups, 300, n_boot=100, seed=7)["mean"]
    b = bootstrap_replicates(stat, groups, 300, n_boot=100, seed=7, block_size=9)["mean"]
    c = bootstrap_replicates(stat, groups, 300, n_boot=100, seed=8)["mean"]
    np.testing.assert_allclose(a, b, rtol=1e-12)  # same draws; only BLAS summation order may differ
    assert not np.allclose(a, c)
    codes, n_groups = encode_groups(groups, 300)
    whole = np.vstack(list(replicate_weights(codes, n_groups, 100, seed=7)))
    blocked = np.vstack(list(replicate_weights(codes, n_groups, 100, seed=7, block_size=9)))
    np.testing.assert_array_equal(whole, blocked)
    assert bootstrap_replicates(stat, groups, 300, n_boot=0) == {}


def test_replicates_equal_explicit_resampling() -> None:
    rng = np.random.default_rng(3)
    values = rng.random(120)
    groups = rng.integers(0, 25, 120)
    reps = bootstrap_replicates(_mean_statistic(values), groups, 120, n_boot=60, seed=11)["mean"]
    explicit = [values[idx].mean() for idx in group_bootstrap_indices(groups, 120, n_boot=60, seed=11)]
    np.testing.assert_allclose(reps, explicit, rtol=1e-12)


def test_percentile_interval_ignores_undefined_replicates() -> None:
    reps = np.arange(100, dtype=float)
    interval = percentile_interval(reps, 0.9)
    np.testing.assert_allclose([interval.lo, interval.hi], np.percentile(reps, [5, 95]))
    assert interval.n_used == 100
    with_nan = np.concatenate([reps, np.full(20, np.nan)])
    interval = percentile_interval(with_nan[:, None], 0.9)
    np.testing.assert_allclose([interval.lo[0], interval.hi[0]], np.percentile(reps, [5, 95]))
    assert interval.n_used[0] == 100
    all_nan = percentile_interval(np.full((10, 2), np.nan))
    assert np.all(np.isnan(all_nan.lo)) and np.all(all_nan.n_used == 0)
    with pytest.raises(ValueError):
        percentile_interval(reps, 1.5)


def test_ci_entry_reports_replicates_used() -> None:
    interval = percentile_interval(np.r_[np.linspace(0, 1, 90), np.full(10, np.nan)])
    entry = ci_entry(0.5, interval, (), n_boot=100)
    assert entry["replicates"] == 90 and entry["ci"][0] < 0.5 < entry["ci"][1]
    full = ci_entry(0.5, percentile_interval(np.linspace(0, 1, 100)), (), n_boot=100)
    assert set(full) == {"value", "ci"}
    assert ci_entry(float("nan"), interval, (), 100) == {"value": None, "ci": None}
    assert ci_entry(0.3, None) == {"value": 0.3, "ci": None}
    none_used = ci_entry(0.3, percentile_interval(np.full(5, np.nan)), (), n_boot=5)
    assert none_used == {"value": 0.3, "ci": None, "replicates": 0}


def test_undefined_metric_skips_only_its_replicates() -> None:
    # A rare class in 2 of 40 groups: many replicates lack positives, so its AUC is undefined there.
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(40), 5)
    positive = np.isin(groups, [0, 1])
    scores = rng.random(200) + positive

    def statistic(w: np.ndarray) -> dict[str, np.ndarray]:
        return {"auc": weighted_roc_auc(scores, positive, w), "prevalence": weighted_mean(positive, w)}

    out = group_bootstrap(statistic, groups, 200, n_boot=300, seed=0)
    expected_missing = 300 * (1 - 2 / 40) ** 40  # P(neither positive group drawn)
    missing = 300 - int(out["auc"].n_used)
    assert missing > 0
    assert abs(missing - expected_missing) < 4 * np.sqrt(expected_missing) + 3
    assert int(out["prevalence"].n_used) == 300


def test_group_resampling_widens_ci_under_clustering() -> None:
    # 50 patients x 20 images; correctness is shared within a patient (strong intra-class correlation).
    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(50), 20)
    patient_rate = rng.beta(2, 2, 50)
    correct = (rng.random(1000) < patient_rate[groups]).astype(float)
    stat = _mean_statistic(correct)
    by_group = group_bootstrap(stat, groups, 1000, n_boot=500, seed=1)["mean"]
    by_image = group_bootstrap(stat, None, 1000, n_boot=500, seed=1)["mean"]
    width_group = float(by_group.hi - by_group.lo)
    width_image = float(by_image.hi - by_image.lo)
    assert width_group > 2.0 * width_image
    # With independent images the two agree (no spurious widening).
    independent = (rng.random(1000) < 0.5).astype(float)
    w_g = group_bootstrap(_mean_statistic(independent), groups, 1000, n_boot=500, seed=1)["mean"]
    w_i = group_bootstrap(_mean_statistic(independent), None, 1000, n_boot=500, seed=1)["mean"]
    assert 0.7 < float(w_g.hi - w_g.lo) / float(w_i.hi - w_i.lo) < 1.4


def test_bootstrap_of_all_metrics_is_fast() -> None:
    rng = np.random.default_rng(6)
    n, k = 2000, 8
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    groups = rng.integers(0, 300, n)
    statistic = classification_statistic(y, proba, (2, 3), 15, np.ones(k, bool))
    start = time.perf_counter()
    out = group_bootstrap(statistic, groups, n, n_boot=1000, seed=0)
    elapsed = time.perf_counter() - start
    assert out["accuracy"].n_used == 1000
    assert out["per_class/auc"].lo.shape == (k,)
    assert elapsed < 10.0, f"1000 replicates took {elapsed:.1f} s"
