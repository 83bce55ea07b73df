"""The acquisition rule of ``lablens suggest``: uncertainty, k-center diversity, exclusions, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from lablens.errors import SettingError
from lablens.infer.acquisition import (
    k_center_greedy,
    mean_pairwise_distance,
    suggest_rows,
    uncertainty,
    unit_embeddings,
)


def test_uncertainty_is_one_minus_the_margin_or_the_normalised_entropy() -> None:
    proba = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    assert np.allclose(uncertainty(proba, "margin"), [0.5, 1.0, 0.0])
    assert np.allclose(uncertainty(proba, "entropy")[1:], [1.0, 0.0], atol=1e-9)
    with pytest.raises(SettingError, match="choose one of margin, entropy, random"):
        uncertainty(proba, "bald")


def test_k_center_greedy_takes_the_farthest_point_each_time() -> None:
    emb = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [0.0, 3.0], [4.0, 4.0]])
    assert k_center_greedy(emb, np.arange(5), 3, centres=np.array([], int), first=0) == [0, 4, 2]
    # from a labelled centre at (5, 0): the farthest candidates first
    assert k_center_greedy(emb, np.array([0, 1, 3, 4]), 2, centres=np.array([2])) == [3, 4]


def _clustered_case() -> tuple[np.ndarray, np.ndarray]:
    """Ten near-copies of one very uncertain cell, and ten varied cells slightly less uncertain."""
    rng = np.random.default_rng(0)
    copies = np.array([5.0, 0.0, 0.0]) + rng.normal(0, 0.01, (10, 3))
    varied = rng.normal(0, 3.0, (10, 3))
    emb = np.concatenate([copies, varied])
    proba = np.array([[0.40, 0.35, 0.25]] * 10 + [[0.50, 0.30, 0.20]] * 10)  # uncertainty 0.95 and 0.8
    return proba, emb


def test_a_suggested_batch_is_more_diverse_than_the_most_uncertain_images() -> None:
    proba, emb = _clustered_case()
    everyone, nobody = np.ones(20, bool), np.zeros(20, bool)
    by_uncertainty = list(np.argsort(-uncertainty(proba), kind="stable")[:5])
    assert set(by_uncertainty) <= set(range(10))  # five copies of one cell
    batch = suggest_rows(proba, emb, everyone, nobody, 5, pool_factor=4)
    assert batch.rows[0] in range(10) and len(set(batch.rows) & set(range(10))) == 1
    unit = unit_embeddings(emb)
    assert mean_pairwise_distance(unit[batch.rows]) > 3 * mean_pairwise_distance(unit[by_uncertainty])


def test_a_batch_never_repeats_or_takes_an_excluded_image_and_replays_by_seed() -> None:
    proba, emb = _clustered_case()
    eligible = np.ones(20, bool)
    eligible[[0, 12, 15]] = False
    for rule in ("margin", "entropy", "random"):
        a = suggest_rows(proba, emb, eligible, ~eligible, 8, rule=rule, seed=3)
        assert len(set(a.rows)) == 8 and not set(a.rows) & {0, 12, 15}
        assert a.rows == suggest_rows(proba, emb, eligible, ~eligible, 8, rule=rule, seed=3).rows
    draws = {
        tuple(suggest_rows(proba, emb, eligible, ~eligible, 8, rule="random", seed=s).rows) for s in range(4)
    }
    assert len(draws) > 1
    assert len(suggest_rows(proba, emb, eligible, ~eligible, 50).rows) == 17  # no more than are eligible
