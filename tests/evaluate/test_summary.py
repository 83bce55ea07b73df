"""The lablens.metrics/1 document: shape, JSON safety, values equal to scikit-learn."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from lablens.evaluate.summary import evaluate_predictions, overall_names

CLASSES = ["rbc", "wbc", "platelet", "parasite"]


def _data(n: int = 400, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 80, n)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba, groups


def _assert_plain(obj: object) -> None:
    """Only JSON types: dict/list/str/int/float/bool/None, no numpy scalars, no NaN."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            assert isinstance(key, str)
            _assert_plain(value)
    elif isinstance(obj, list):
        for value in obj:
            _assert_plain(value)
    else:
        assert obj is None or type(obj) in (str, int, float, bool), type(obj)
        if isinstance(obj, float):
            assert np.isfinite(obj)


def test_document_shape_and_json() -> None:
    y, proba, groups = _data()
    reader = np.array([CLASSES[i] for i in y], dtype=object)
    reader[:30] = None
    doc = evaluate_predictions(y, proba, CLASSES, groups=groups, reader=reader, n_boot=200)
    _assert_plain(doc)
    json.dumps(doc, allow_nan=False)
    assert set(doc) == {
        "schema", "classes", "n", "n_groups", "overall", "per_class", "confusion_matrix",
        "calibration", "agreement", "bootstrap", "macro_over", "notes",
    }  # fmt: skip
    assert doc["schema"] == "lablens.metrics/1"
    assert doc["classes"] == CLASSES
    assert doc["n"] == 400 and doc["n_groups"] == len(np.unique(groups))
    expected = [
        "accuracy", "balanced_accuracy", "top_2_accuracy", "top_3_accuracy",
        *[f"{a}_{m}" for a in ("macro", "weighted") for m in ("precision", "recall", "specificity", "npv", "f1", "jaccard")],
        "mcc", "kappa", "macro_auc", "log_loss", "brier", "ece",
    ]  # fmt: skip
    assert list(doc["overall"]) == expected
    for entry in doc["overall"].values():
        assert set(entry) == {"value", "ci"}
        assert entry["ci"][0] <= entry["ci"][1]
    for name, row in doc["per_class"].items():
        assert name in CLASSES
        assert set(row) == {"precision", "recall", "specificity", "npv", "f1", "jaccard", "auc", "support"}
    assert doc["confusion_matrix"]["labels"] == CLASSES
    assert doc["calibration"]["n_bins"] == 15 and len(doc["calibration"]["bins"]) == 15
    assert set(doc["calibration"]["bins"][0]) == {"lo", "hi", "count", "confidence", "accuracy"}
    assert doc["agreement"]["n"] == 370 and doc["agreement"]["n_missing"] == 30
    assert doc["bootstrap"] == {
        "replicates": 200,
        "level": 0.95,
        "unit": "group",
        "seed": 0,
        "reliable": True,
    }


def test_values_equal_sklearn() -> None:
    y, proba, groups = _data(seed=1)
    doc = evaluate_predictions(y, proba, CLASSES, groups=groups, n_boot=0)
    pred = proba.argmax(axis=1)
    labels = list(range(4))
    o = doc["overall"]
    assert o["accuracy"]["value"] == pytest.approx(skm.accuracy_score(y, pred))
    assert o["balanced_accuracy"]["value"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert o["top_2_accuracy"]["value"] == pytest.approx(
        skm.top_k_accuracy_score(y, proba, k=2, labels=labels)
    )
    assert o["macro_f1"]["value"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert o["weighted_precision"]["value"] == pytest.approx(skm.precision_score(y, pred, average="weighted"))
    assert o["weighted_jaccard"]["value"] == pytest.approx(skm.jaccard_score(y, pred, average="weighted"))
    assert o["mcc"]["value"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    assert o["kappa"]["value"] == pytest.approx(skm.cohen_kappa_score(y, pred))
    assert o["macro_auc"]["value"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert o["log_loss"]["value"] == pytest.approx(skm.log_loss(y, proba))
    assert o["brier"]["value"] == pytest.approx(skm.brier_score_loss(y, proba, scale_by_half=False))
    assert o["ece"]["value"] == pytest.approx(doc["calibration"]["ece"])
    recall = skm.recall_score(y, pred, average=None)
    for c, name in enumerate(CLASSES):
        row = doc["per_class"][name]
        assert row["recall"]["value"] == pytest.approx(recall[c])
        assert row["auc"]["value"] == pytest.approx(skm.roc_auc_score(y == c, proba[:, c]))
        assert row["support"] == int((y == c).sum())
        assert row["recall"]["ci"] is None
    assert doc["confusion_matrix"]["matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert doc["agreement"] is None
    assert doc["n_groups"] == len(np.unique(groups))


def test_defaults_one_group_per_sample_and_top_k_below_k() -> None:
    y, proba, _ = _data(n=120, k=3, seed=2)
    doc = evaluate_predictions(y, proba, CLASSES[:3], n_boot=50)
    assert doc["n_groups"] == 120
    assert "top_2_accuracy" in doc["overall"] and "top_3_accuracy" not in doc["overall"]
    assert overall_names(2, (2, 3))[:3] == ["accuracy", "balanced_accuracy", "macro_precision"]


def test_absent_class_gives_none_auc_and_partial_replicates() -> None:
    y, proba, groups = _data(seed=3)
    y[y == 3] = 0  # class 3 absent from the truth
    y[y == 2] = 1
    y[:3] = 2  # class 2 nearly absent: 3 images of one group
    groups[:3] = 999
    doc = evaluate_predictions(y, proba, CLASSES, groups=groups, n_boot=300)
    json.dumps(doc, allow_nan=False)
    assert doc["per_class"]["parasite"]["auc"] == {"value": None, "ci": None}
    assert doc["per_class"]["parasite"]["support"] == 0
    aucs = [skm.roc_auc_score(y == c, proba[:, c]) for c in range(3)]
    assert doc["overall"]["macro_auc"]["value"] == pytest.approx(np.mean(aucs))
    rare = doc["per_class"]["platelet"]["auc"]
    assert 0 < rare["replicates"] < 300  # replicates without the rare group are skipped
    assert doc["overall"]["macro_auc"]["replicates"] == rare["replicates"]
    assert "replicates" not in doc["overall"]["accuracy"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected_bacc = skm.balanced_accuracy_score(y, proba.argmax(axis=1))
    assert doc["overall"]["balanced_accuracy"]["value"] == pytest.approx(expected_bacc)


def test_group_cis_reproducible_and_wider_than_image_cis() -> None:
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(40), 15)
    y = rng.integers(0, 4, 600)
    # Whether the model is right depends on the patient: strongly clustered errors.
    good = rng.random(40) < 0.7
    pred = np.where(good[groups], y, (y + 1) % 4)
    proba = np.full((600, 4), 0.1)
    proba[np.arange(600), pred] = 0.7
    a = evaluate_predictions(y, proba, CLASSES, groups=groups, n_boot=300, seed=5)
    b = evaluate_predictions(y, proba, CLASSES, groups=groups, n_boot=300, seed=5)
    images = evaluate_predictions(y, proba, CLASSES, n_boot=300, seed=5)
    assert a == b
    ci_g = a["overall"]["accuracy"]["ci"]
    ci_i = images["overall"]["accuracy"]["ci"]
    assert (ci_g[1] - ci_g[0]) > 2 * (ci_i[1] - ci_i[0])
    assert a["overall"]["accuracy"]["value"] == images["overall"]["accuracy"]["value"]
    other = evaluate_predictions(y, proba, CLASSES, groups=groups, n_boot=300, seed=6)
    assert other["overall"]["accuracy"]["ci"] != ci_g


def test_invalid_inputs_raise() -> None:
    y, proba, _ = _data(n=20)
    with pytest.raises(ValueError):
        evaluate_predictions(y, proba * 2, CLASSES, n_boot=0)
    with pytest.raises(ValueError):
        evaluate_predictions(y, proba, CLASSES[:3], n_boot=0)
    with pytest.raises(ValueError):
        evaluate_predictions(y + 4, proba, CLASSES, n_boot=0)
    with pytest.raises(ValueError):
        evaluate_predictions(y.astype(float), proba, CLASSES, n_boot=0)


def test_absent_class_is_not_estimable_and_left_out_of_macro_averages() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])  # class 2 has no true example
    proba = np.eye(3)[[0, 0, 1, 2, 0, 1]] * 0.9 + 0.1 / 3
    doc = evaluate_predictions(y, proba, ["a", "b", "c"], groups=np.arange(6), n_boot=50)
    assert doc["per_class"]["c"]["estimable"] is False and doc["per_class"]["c"]["recall"]["value"] is None
    assert "estimable" not in doc["per_class"]["a"]
    assert doc["macro_over"] == ["a", "b"]
    recall = [doc["per_class"][c]["recall"]["value"] for c in ("a", "b")]
    assert doc["overall"]["macro_recall"]["value"] == pytest.approx(np.mean(recall))  # 0.833, not 0.556
    assert any("not estimable" in n and "c" in n for n in doc["notes"])


def test_intervals_from_fewer_than_ten_groups_are_flagged() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    proba = np.eye(2)[y] * 0.8 + 0.1
    few = evaluate_predictions(y, proba, ["a", "b"], groups=np.arange(200) % 6, n_boot=50)
    many = evaluate_predictions(y, proba, ["a", "b"], groups=np.arange(200) % 40, n_boot=50)
    assert few["bootstrap"]["reliable"] is False and any("6 group(s)" in n for n in few["notes"])
    assert many["bootstrap"]["reliable"] is True and many["notes"] == []
