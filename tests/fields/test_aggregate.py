"""Sample-level rules: differential with Wilson intervals, ANA report, verdict over images."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from lablens.fields.aggregate import ana_report, differential, verdict

CLASSES = ["ig", "lymphocyte", "neutrophil", "platelet"]


def _onehot(idx: list[int], conf: float = 0.9) -> np.ndarray:
    p = np.full((len(idx), len(CLASSES)), (1 - conf) / (len(CLASSES) - 1))
    p[np.arange(len(idx)), idx] = conf
    return p


def test_differential_counts_percent_and_wilson_ci() -> None:
    p = np.vstack([_onehot([2] * 6 + [1] * 3 + [0]), _onehot([1], conf=0.4), _onehot([3])])
    doc = differential(p, CLASSES, min_confidence=0.5, min_cells=5)
    assert doc["counts"] == {"ig": 1, "lymphocyte": 3, "neutrophil": 6}
    assert doc["n_identified"] == 10 and doc["n_unidentified"] == 1 and doc["n_non_wbc"] == {"platelet": 1}
    assert doc["percent"]["neutrophil"] == 60.0
    lo, hi = proportion_confint(6, 10, alpha=0.05, method="wilson")
    assert doc["ci95"]["neutrophil"] == pytest.approx([100 * lo, 100 * hi], abs=0.01)
    assert any(f.startswith("ig: 1 cell") for f in doc["flags"])
    assert not any("only" in f for f in doc["flags"])
    few = differential(p, CLASSES, min_cells=100)
    assert any("only 10 white cells" in f for f in few["flags"])


def test_differential_flags_many_unidentified_and_handles_no_cells() -> None:
    doc = differential(_onehot([2, 2, 1], conf=0.3), CLASSES, min_confidence=0.5)
    assert doc["n_identified"] == 0 and any("unidentified" in f for f in doc["flags"])
    empty = differential(np.zeros((0, 4)), CLASSES)
    assert (
        empty["n_cells"] == 0
        and empty["percent"]["neutrophil"] is None
        and empty["ci95"]["neutrophil"] is None
    )


def test_ana_report_dominant_mixed_and_mitoses() -> None:
    classes = ["centromere", "homogeneous", "negative"]
    p = np.array([[0.8, 0.1, 0.1]] * 6 + [[0.1, 0.8, 0.1]] * 3 + [[0.1, 0.1, 0.8]])
    doc = ana_report(p, classes, mitotic=[False] * 8 + [True, False])
    assert doc["result"] == "positive" and doc["dominant_pattern"] == "centromere"
    assert doc["mixed_patterns"] == ["homogeneous"] and doc["cell_share"]["homogeneous"] == 0.3
    assert doc["n_mitotic"] == 1 and doc["mitotic_patterns"] == {"homogeneous": 1}
    neg = ana_report(np.array([[0.1, 0.1, 0.8]] * 4), classes)
    assert neg["result"] == "negative" and neg["mixed_patterns"] == []
    assert ana_report(np.zeros((0, 3)), classes)["flags"]


def test_verdict_is_the_mean_probability_argmax() -> None:
    doc = verdict(np.array([[0.6, 0.4], [0.2, 0.8], [0.45, 0.55]]), ["normal", "ssc"])
    assert doc["verdict"] == "ssc" and doc["per_image"] == ["normal", "ssc", "ssc"]
    assert doc["mean_probability"]["ssc"] == pytest.approx(0.5833, abs=1e-4)
