"""Seed-averaged scores with group-bootstrap intervals, majority votes and paired tests: exact on small cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from lablens.evaluate.seeded import majority_vote, paired_tests, seeded_scores

Y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
A = np.array([0, 0, 1, 1, 0, 2, 2, 2, 1, 1])
B = np.array([0, 0, 0, 1, 1, 2, 2, 0, 2, 2])


def test_values_are_the_seed_means_of_the_scikit_learn_metrics() -> None:
    s = seeded_scores(Y, [A, B], rare=1, n_classes=3, n_boot=0)
    for name, fn in [("sensitivity", recall_score), ("ppv", precision_score), ("f1", f1_score)]:
        per_seed = [fn(Y == 1, p == 1) for p in (A, B)]
        assert s[name]["per_seed"] == pytest.approx(per_seed)
        assert s[name]["value"] == pytest.approx(np.mean(per_seed)) and s[name]["ci"] is None
    macro = [f1_score(Y, p, average="macro") for p in (A, B)]
    assert s["macro_f1"]["per_seed"] == pytest.approx(macro)
    assert s["accuracy"]["per_seed"] == pytest.approx([0.7, 0.8])


def test_intervals_resample_groups_and_contain_the_value() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    preds = [np.where(rng.random(300) < 0.8, y, rng.integers(0, 3, 300)) for _ in range(3)]
    groups = np.repeat(np.arange(30), 10)
    s = seeded_scores(y, preds, rare=2, n_classes=3, groups=groups, n_boot=400)
    for m in ("sensitivity", "ppv", "f1", "macro_f1", "accuracy"):
        lo, hi = s[m]["ci"]
        assert lo < s[m]["value"] < hi and hi - lo < 0.3
    one_group = seeded_scores(y, preds, rare=2, n_classes=3, groups=np.zeros(300), n_boot=50)
    assert one_group["accuracy"]["ci"][0] == pytest.approx(
        one_group["accuracy"]["ci"][1]
    )  # nothing to resample


def test_majority_vote_and_paired_tests() -> None:
    C = np.array([1, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    np.testing.assert_array_equal(majority_vote([A, B, C], 3), [0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    rows = paired_tests(Y, {"ref": A, "new": B, "same": A}, reference="ref", rare=1)
    new, same = rows
    assert new["method"] == "new" and new["accuracy_difference"] == pytest.approx(0.1)
    # on the 3 class-1 images: A finds 2 (rows 3, 9), B finds 2 (rows 3, 4) → no difference in sensitivity
    assert new["sensitivity_difference"] == pytest.approx(0.0)
    assert same["p"] == 1.0 and same["p_holm"] == 1.0 and 0 < new["p"] <= new["p_holm"] <= 1
