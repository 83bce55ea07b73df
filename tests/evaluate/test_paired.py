"""Paired comparison of a candidate and the model in service: figures, intervals, the promotion decision."""

from __future__ import annotations

import numpy as np
import pytest

from lablens.evaluate.paired import PromotionRule, paired_comparison
from lablens.evaluate.stats import mcnemar_test

CLASSES = ["a", "b", "c"]


def _cases(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat(np.arange(3), n // 3)
    groups = np.arange(len(y)) // 3  # three images per patient
    return y, groups


def _with_errors(y: np.ndarray, wrong: dict[int, int], seed: int) -> np.ndarray:
    """``y`` with ``wrong[k]`` images of class k called as the next class."""
    rng = np.random.default_rng(seed)
    pred = y.copy()
    for k, n in wrong.items():
        idx = rng.choice(np.flatnonzero(y == k), n, replace=False)
        pred[idx] = (k + 1) % 3
    return pred


def test_figures_match_a_hand_count_and_intervals_hold_them() -> None:
    y, groups = _cases()
    current = _with_errors(y, {0: 10, 1: 10, 2: 10}, seed=1)
    candidate = _with_errors(y, {0: 2, 1: 10, 2: 12}, seed=2)
    doc = paired_comparison(y, candidate, current, CLASSES, groups=groups, n_boot=500)
    assert doc["accuracy"]["candidate"] == pytest.approx(276 / 300)
    assert doc["accuracy"]["current"] == pytest.approx(270 / 300)
    diff = doc["accuracy"]["difference"]
    assert diff["value"] == pytest.approx(6 / 300) and diff["ci"][0] < diff["value"] < diff["ci"][1]
    a = doc["per_class"]["a"]
    assert (a["support"], a["sensitivity_candidate"], a["sensitivity_current"]) == (100, 0.98, 0.90)
    assert a["difference"]["value"] == pytest.approx(0.08) and a["difference"]["ci"][0] > 0
    assert a["mcnemar"] == mcnemar_test(candidate[y == 0] == 0, current[y == 0] == 0).to_dict()
    assert doc["mcnemar"]["estimate"] == pytest.approx(6 / 300)
    assert doc["per_class"]["c"]["difference"]["value"] == pytest.approx(-0.02)


def test_a_class_made_worse_is_refused_with_the_reason() -> None:
    y, groups = _cases()
    current = _with_errors(y, {0: 8, 1: 5, 2: 8}, seed=1)
    worse_on_b = _with_errors(y, {0: 0, 1: 15, 2: 0}, seed=2)  # better overall, 10 points worse on b
    doc = paired_comparison(y, worse_on_b, current, CLASSES, groups=groups, n_boot=200)
    assert doc["accuracy"]["difference"]["value"] > 0
    assert not doc["decision"]["promote"]
    (reason,) = doc["decision"]["reasons"]
    assert reason.startswith("b: sensitivity 0.850 vs 0.950") and "−0.02 allowed" in reason
    assert paired_comparison(y, worse_on_b, current, CLASSES, n_boot=0, rule=PromotionRule(margin=0.15))[
        "decision"
    ] == {"promote": True, "reasons": []}


def test_a_candidate_better_everywhere_is_promoted_and_non_inferiority_needs_enough_cases() -> None:
    y, groups = _cases()
    current = _with_errors(y, {0: 10, 1: 10, 2: 10}, seed=1)
    better = _with_errors(y, {0: 5, 1: 5, 2: 5}, seed=2)
    assert paired_comparison(y, better, current, CLASSES, groups=groups, n_boot=200)["decision"]["promote"]
    strict = PromotionRule(margin=0.0, basis="ci")  # lower CI bounds must clear 0: not shown on 100 per class
    decision = paired_comparison(y, better, current, CLASSES, groups=groups, n_boot=200, rule=strict)[
        "decision"
    ]
    assert not decision["promote"] and all("lower CI bound" in r for r in decision["reasons"])
    equal = paired_comparison(y, current, current, CLASSES, n_boot=0)
    assert equal["decision"]["promote"] and equal["mcnemar"]["p_value"] == 1.0


def test_refuses_mismatched_inputs_and_rules() -> None:
    y, _ = _cases()
    with pytest.raises(ValueError, match="same, non-empty"):
        paired_comparison(y, y[:-1], y, CLASSES)
    with pytest.raises(ValueError, match="margin"):
        PromotionRule(margin=1.5)
    with pytest.raises(ValueError, match="basis"):
        PromotionRule(basis="p")  # type: ignore[arg-type]
