"""Reader agreement: percent agreement and kappa on the reader-graded subset, with group CIs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score

from lablens.evaluate.agreement import is_missing, reader_agreement
from lablens.evaluate.bootstrap import group_bootstrap_indices

CLASSES = ["neg", "pos", "weak"]


def _data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = np.array(CLASSES)
    groups = rng.integers(0, 60, n)
    truth = classes[rng.integers(0, 3, n)]
    model = np.where(rng.random(n) < 0.8, truth, classes[rng.integers(0, 3, n)])
    reader = np.where(rng.random(n) < 0.85, truth, classes[rng.integers(0, 3, n)]).astype(object)
    return truth, model, reader, groups


def test_is_missing() -> None:
    for value in (None, float("nan"), np.nan, "", "  ", "nan", "NaN", "None", "<NA>"):
        assert is_missing(value), value
    for value in ("neg", "pos", 0, "0"):
        assert not is_missing(value), value
    assert not is_missing("None", classes=["None", "other"])


def test_values_match_sklearn_on_graded_subset() -> None:
    truth, model, reader, groups = _data()
    reader[:10] = None
    reader[10:15] = np.nan
    reader[15:20] = ""
    out = reader_agreement(truth, model, reader, groups, CLASSES, n_boot=0)
    keep = np.arange(300) >= 20
    assert out["n"] == 280 and out["n_missing"] == 20
    r = reader[keep].astype(str)
    pairs = {
        "model_vs_reader": (model[keep], r),
        "reader_vs_truth": (r, truth[keep]),
        "model_vs_truth": (model[keep], truth[keep]),
    }
    for pair, (a, b) in pairs.items():
        assert out[pair]["percent_agreement"] == {"value": pytest.approx(accuracy_score(a, b)), "ci": None}
        assert out[pair]["kappa"]["value"] == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_string_nan_from_numpy_conversion_is_missing() -> None:
    truth = np.array(["neg", "pos", "pos", "neg"])
    reader = np.array(["neg", np.nan, "pos", "pos"])  # numpy turns NaN into the string "nan"
    out = reader_agreement(truth, truth, reader, None, CLASSES, n_boot=0)
    assert out["n"] == 3 and out["n_missing"] == 1
    assert out["reader_vs_truth"]["percent_agreement"]["value"] == pytest.approx(2 / 3)


def test_reader_label_outside_classes_counts_as_disagreement() -> None:
    truth = np.array(["neg", "pos", "pos", "neg", "weak", "pos"])
    model = np.array(["neg", "pos", "neg", "neg", "weak", "pos"])
    reader = np.array(["neg", "uncertain", "pos", "neg", "weak", "weak"], dtype=object)
    out = reader_agreement(truth, model, reader, None, CLASSES, n_boot=0)
    assert out["model_vs_reader"]["percent_agreement"]["value"] == pytest.approx(3 / 6)
    assert out["model_vs_reader"]["kappa"]["value"] == pytest.approx(
        cohen_kappa_score(model, reader.astype(str))
    )


def test_all_missing_gives_none() -> None:
    truth = np.array(["neg", "pos"])
    out = reader_agreement(truth, truth, [None, ""], None, CLASSES, n_boot=50)
    assert out["n"] == 0 and out["n_missing"] == 2
    for pair in ("model_vs_reader", "reader_vs_truth", "model_vs_truth"):
        assert out[pair] == {
            "percent_agreement": {"value": None, "ci": None},
            "kappa": {"value": None, "ci": None},
        }


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        reader_agreement(["neg"], ["neg", "pos"], ["neg"], None, CLASSES)


def test_cis_equal_explicit_group_resampling_of_graded_subset() -> None:
    truth, model, reader, groups = _data(seed=1)
    reader[::7] = None
    out = reader_agreement(truth, model, reader, groups, CLASSES, n_boot=200, level=0.9, seed=3)
    keep = np.array([r is not None for r in reader])
    m, r, g = model[keep], reader[keep].astype(str), groups[keep]
    agree, kappas = [], []
    for idx in group_bootstrap_indices(g, keep.sum(), n_boot=200, seed=3):
        agree.append(accuracy_score(m[idx], r[idx]))
        kappas.append(cohen_kappa_score(m[idx], r[idx]))
    np.testing.assert_allclose(
        out["model_vs_reader"]["percent_agreement"]["ci"], np.percentile(agree, [5, 95])
    )
    np.testing.assert_allclose(
        out["model_vs_reader"]["kappa"]["ci"], np.percentile(kappas, [5, 95]), atol=1e-12
    )
    for pair in ("model_vs_reader", "reader_vs_truth", "model_vs_truth"):
        for metric in ("percent_agreement", "kappa"):
            entry = out[pair][metric]
            assert entry["ci"][0] <= entry["value"] <= entry["ci"][1]


def test_perfect_reader_has_degenerate_ci() -> None:
    truth, model, _, groups = _data(seed=2)
    out = reader_agreement(truth, model, truth.astype(object), groups, CLASSES, n_boot=100)
    assert out["reader_vs_truth"]["percent_agreement"] == {"value": 1.0, "ci": [1.0, 1.0]}
    assert out["reader_vs_truth"]["kappa"]["ci"] == [1.0, 1.0]
    assert out["model_vs_reader"]["kappa"]["value"] == pytest.approx(out["model_vs_truth"]["kappa"]["value"])
