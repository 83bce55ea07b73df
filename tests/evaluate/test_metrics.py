"""Point-estimate metrics must equal scikit-learn's, including edge cases."""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pytest
from sklearn import metrics as skm

from lablens.evaluate.metrics import (
    PER_CLASS_METRICS,
    accuracy,
    averaged_metrics,
    balanced_accuracy,
    brier_score,
    cohen_kappa,
    confusion_matrix,
    log_loss,
    macro_auc,
    matthews_corrcoef,
    per_class_metrics,
    roc_auc,
    roc_auc_ovr,
    safe_divide,
    top_k_accuracy,
    weighted_roc_auc,
)


def _labels(case: str) -> tuple[np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    k = 2 if case == "binary" else 5
    y_true = rng.integers(0, k, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, k, 300))
    if case == "never_predicted":
        y_pred[y_pred == 2] = 0
    elif case == "absent_true":
        y_true[y_true == 3] = 1
    elif case == "absent_both":
        y_true[y_true == 4] = 0
        y_pred[y_pred == 4] = 1
    elif case == "perfect":
        y_pred = y_true.copy()
    elif case == "one_prediction":
        y_pred[:] = 1
    elif case == "tiny":
        y_true, y_pred = np.array([0, 1, 2]), np.array([0, 0, 0])
    return y_true, y_pred, k


CASES = [
    "random",
    "binary",
    "never_predicted",
    "absent_true",
    "absent_both",
    "perfect",
    "one_prediction",
    "tiny",
]


def _sk(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_count_metrics_match_sklearn(case: str, weighted: bool) -> None:
    y_true, y_pred, k = _labels(case)
    labels = list(range(k))
    w = np.random.default_rng(1).integers(0, 4, y_true.size).astype(float) if weighted else None
    cm = confusion_matrix(y_true, y_pred, k, w)
    np.testing.assert_allclose(cm, skm.confusion_matrix(y_true, y_pred, labels=labels, sample_weight=w))

    pc = per_class_metrics(cm)
    p, r, f, s = _sk(
        skm.precision_recall_fscore_support, y_true, y_pred, labels=labels, zero_division=0, sample_weight=w
    )
    np.testing.assert_allclose(pc["precision"], p)
    np.testing.assert_allclose(pc["recall"], r)
    np.testing.assert_allclose(pc["f1"], f)
    np.testing.assert_allclose(pc["support"], s if w is None else [w[y_true == c].sum() for c in labels])
    jac = _sk(
        skm.jaccard_score, y_true, y_pred, labels=labels, average=None, zero_division=0, sample_weight=w
    )
    np.testing.assert_allclose(pc["jaccard"], jac)
    # Specificity and NPV are recall and precision of the "not this class" label.
    spec = [_sk(skm.recall_score, y_true != c, y_pred != c, zero_division=0, sample_weight=w) for c in labels]
    npv = [
        _sk(skm.precision_score, y_true != c, y_pred != c, zero_division=0, sample_weight=w) for c in labels
    ]
    np.testing.assert_allclose(pc["specificity"], spec)
    np.testing.assert_allclose(pc["npv"], npv)

    avg = averaged_metrics(pc)
    for average in ("macro", "weighted"):
        p, r, f, _ = _sk(
            skm.precision_recall_fscore_support,
            y_true, y_pred, labels=labels, average=average, zero_division=0, sample_weight=w,
        )  # fmt: skip
        np.testing.assert_allclose(avg[f"{average}_precision"], p)
        np.testing.assert_allclose(avg[f"{average}_recall"], r)
        np.testing.assert_allclose(avg[f"{average}_f1"], f)
        jac = _sk(
            skm.jaccard_score,
            y_true,
            y_pred,
            labels=labels,
            average=average,
            zero_division=0,
            sample_weight=w,
        )
        np.testing.assert_allclose(avg[f"{average}_jaccard"], jac)
    np.testing.assert_allclose(avg["macro_specificity"], np.mean(spec))
    np.testing.assert_allclose(avg["weighted_npv"], np.average(npv, weights=pc["support"]))

    np.testing.assert_allclose(accuracy(cm), skm.accuracy_score(y_true, y_pred, sample_weight=w))
    np.testing.assert_allclose(
        balanced_accuracy(cm), _sk(skm.balanced_accuracy_score, y_true, y_pred, sample_weight=w)
    )
    np.testing.assert_allclose(matthews_corrcoef(cm), skm.matthews_corrcoef(y_true, y_pred, sample_weight=w))
    np.testing.assert_allclose(
        cohen_kappa(cm),
        _sk(skm.cohen_kappa_score, y_true, y_pred, sample_weight=w, replace_undefined_by=0.0),
        atol=1e-12,
    )


def test_undefined_values_are_zero() -> None:
    cm = confusion_matrix(np.zeros(4, int), np.zeros(4, int), 3)
    pc = per_class_metrics(cm)
    for name in PER_CLASS_METRICS:
        assert np.all(np.isfinite(pc[name]))
    np.testing.assert_allclose(pc["precision"], [1.0, 0.0, 0.0])
    assert matthews_corrcoef(cm) == 0.0
    assert cohen_kappa(cm) == 0.0  # chance agreement is 1: undefined
    np.testing.assert_array_equal(safe_divide(np.array([1.0, 0.0]), np.array([0.0, 0.0])), [0.0, 0.0])


def test_batched_confusion_matrices_equal_one_at_a_time() -> None:
    y_true, y_pred, k = _labels("random")
    weights = np.random.default_rng(2).integers(0, 3, (6, y_true.size)).astype(float)
    batch = confusion_matrix(y_true, y_pred, k, weights)
    assert batch.shape == (6, k, k)
    for b in range(6):
        single = confusion_matrix(y_true, y_pred, k, weights[b])
        np.testing.assert_allclose(batch[b], single)
        # Integer weights are the same as repeating samples.
        rep = np.repeat(np.arange(y_true.size), weights[b].astype(int))
        np.testing.assert_array_equal(single, confusion_matrix(y_true[rep], y_pred[rep], k))
    for name, values in per_class_metrics(batch).items():
        for b in range(6):
            np.testing.assert_allclose(values[b], per_class_metrics(batch[b])[name])
    np.testing.assert_allclose(matthews_corrcoef(batch), [matthews_corrcoef(c) for c in batch])
    np.testing.assert_allclose(cohen_kappa(batch), [cohen_kappa(c) for c in batch])
    np.testing.assert_allclose(balanced_accuracy(batch), [balanced_accuracy(c) for c in batch])


def _proba(n: int, k: int, seed: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    if ties:
        p = np.round(p, 1)
        p[:, -1] = 1.0 - p[:, :-1].sum(axis=1)
        p = np.clip(p, 0.0, 1.0)
        p /= p.sum(axis=1, keepdims=True)
    return p, y


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("k", [3, 6])
def test_top_k_accuracy_matches_sklearn(ties: bool, k: int) -> None:
    p, y = _proba(400, k, 3, ties)
    w = np.random.default_rng(4).random(400)
    for top in range(1, k):
        expected = skm.top_k_accuracy_score(y, p, k=top, labels=list(range(k)))
        assert top_k_accuracy(p, y, top) == pytest.approx(expected, abs=1e-12)
        expected_w = skm.top_k_accuracy_score(y, p, k=top, labels=list(range(k)), sample_weight=w)
        assert top_k_accuracy(p, y, top, w) == pytest.approx(expected_w, abs=1e-12)


def test_top_k_tie_breaking_follows_sklearn() -> None:
    p = np.array([[0.4, 0.2, 0.4], [0.4, 0.2, 0.4], [1 / 3, 1 / 3, 1 / 3]])
    y = np.array([0, 2, 1])
    for top in (1, 2):
        expected = skm.top_k_accuracy_score(y, p, k=top, labels=[0, 1, 2])
        assert top_k_accuracy(p, y, top) == pytest.approx(expected)


@pytest.mark.parametrize("ties", [False, True])
def test_auc_matches_sklearn(ties: bool) -> None:
    p, y = _proba(300, 4, 5, ties)
    aucs = roc_auc_ovr(p, y)
    for c in range(4):
        assert aucs[c] == pytest.approx(skm.roc_auc_score(y == c, p[:, c]), abs=1e-12)
    expected_macro = skm.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=[0, 1, 2, 3])
    assert macro_auc(aucs) == pytest.approx(expected_macro, abs=1e-12)


def test_auc_binary_and_undefined_classes() -> None:
    p, y = _proba(200, 2, 6, ties=True)
    aucs = roc_auc_ovr(p, y)
    assert aucs[1] == pytest.approx(skm.roc_auc_score(y, p[:, 1]))
    assert aucs[0] == pytest.approx(skm.roc_auc_score(y == 0, p[:, 0]))
    p3, y3 = _proba(200, 3, 7, ties=False)
    y3[y3 == 2] = 0
    aucs3 = roc_auc_ovr(p3, y3)
    assert aucs3[2] is None
    assert macro_auc(aucs3) == pytest.approx(np.mean(aucs3[:2]))
    assert macro_auc([None, None]) is None
    assert roc_auc(np.array([0.1, 0.9]), np.array([True, True])) is None
    assert roc_auc(np.array([0.1, 0.9, 0.5]), np.array([False, True, False])) == 1.0


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_auc_matches_sklearn_and_repetition(ties: bool) -> None:
    p, y = _proba(250, 3, 8, ties)
    rng = np.random.default_rng(9)
    weights = rng.integers(0, 4, (5, 250)).astype(float)
    for c in range(3):
        batch = weighted_roc_auc(p[:, c], y == c, weights)
        assert batch.shape == (5,)
        for b in range(5):
            expected = skm.roc_auc_score(y == c, p[:, c], sample_weight=weights[b])
            assert batch[b] == pytest.approx(expected, abs=1e-12)
            rep = np.repeat(np.arange(250), weights[b].astype(int))
            assert batch[b] == pytest.approx(roc_auc(p[rep, c], y[rep] == c), abs=1e-12)
        assert float(weighted_roc_auc(p[:, c], y == c, np.ones(250))) == pytest.approx(
            roc_auc(p[:, c], y == c)
        )
    no_pos = weighted_roc_auc(p[:, 0], np.zeros(250, bool), weights)
    assert np.all(np.isnan(no_pos))


def test_log_loss_and_brier_match_sklearn() -> None:
    p, y = _proba(300, 4, 10, ties=False)
    p[0] = [0.0, 0.0, 0.0, 1.0]
    y[0] = 0  # probability 0 on the truth: clipped, finite
    w = np.random.default_rng(11).random(300)
    labels = [0, 1, 2, 3]
    assert log_loss(p, y) == pytest.approx(skm.log_loss(y, p, labels=labels), rel=1e-12)
    assert log_loss(p, y, w) == pytest.approx(skm.log_loss(y, p, labels=labels, sample_weight=w), rel=1e-12)
    expected = skm.brier_score_loss(y, p, labels=labels, scale_by_half=False)
    assert brier_score(p, y) == pytest.approx(expected, rel=1e-12)
    expected_w = skm.brier_score_loss(y, p, labels=labels, scale_by_half=False, sample_weight=w)
    assert brier_score(p, y, w) == pytest.approx(expected_w, rel=1e-12)
    perfect = np.eye(4)[y]
    assert brier_score(perfect, y) == 0.0
    assert log_loss(perfect, y) == pytest.approx(-np.log(1 - np.finfo(float).eps))
