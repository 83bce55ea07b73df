"""Tests for the self-contained HTML evaluation report (lablens.report)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lablens.report import plots
from lablens.report.html import format_ci, format_value, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DATA_URI = "data:image/png;base64,"
EVIL_CLASS = "<script>alert(1)</script>"
CLASSES = ["neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil", "blast", "platelet", EVIL_CLASS]
KNOWN_ENTRY = {"value": 0.953, "ci": [0.921, 0.978]}
KNOWN_TEXT = "0.953 (0.921–0.978)"


def _entry(rng: np.random.Generator, value: float | None = None) -> dict[str, Any]:
    """A ``{"value", "ci"}`` metric entry with a plausible interval around ``value``."""
    v = float(rng.uniform(0.6, 0.99)) if value is None else value
    return {"value": v, "ci": [max(v - 0.05, 0.0), min(v + 0.03, 1.0)]}


def make_case(
    classes: list[str] = CLASSES, n: int = 160, n_groups: int = 40, seed: int = 0
) -> dict[str, Any]:
    """Synthetic arrays plus a ``lablens.metrics/1`` document matching the documented schema."""
    rng = np.random.default_rng(seed)
    k = len(classes)
    y_true = np.arange(n) % k
    logits = rng.normal(0.0, 1.0, size=(n, k))
    logits[np.arange(n), y_true] += 2.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_pred = proba.argmax(axis=1)
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (y_true, y_pred), 1)

    names = [
        "accuracy",
        "balanced_accuracy",
        "top_2_accuracy",
        "top_3_accuracy",
        "macro_precision",
        "macro_recall",
        "macro_specificity",
        "macro_npv",
        "macro_f1",
        "macro_jaccard",
        "weighted_precision",
        "weighted_recall",
        "weighted_specificity",
        "weighted_npv",
        "weighted_f1",
        "weighted_jaccard",
        "mcc",
        "kappa",
        "macro_auc",
        "log_loss",
        "brier",
        "ece",
    ]
    overall = {name: _entry(rng) for name in names}
    overall["accuracy"] = _entry(rng, float((y_pred == y_true).mean()))
    overall["macro_f1"] = dict(KNOWN_ENTRY)
    overall["mcc"] = {"value": None, "ci": None}

    per_class = {
        name: {
            **{
                metric: _entry(rng)
                for metric in ("precision", "recall", "specificity", "npv", "f1", "jaccard", "auc")
            },
            "support": int((y_true == i).sum()),
        }
        for i, name in enumerate(classes)
    }
    per_class[classes[0]]["recall"] = dict(KNOWN_ENTRY)

    edges = np.linspace(0.0, 1.0, 11)
    confidence = proba.max(axis=1)
    bins = []
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence >= lo) & (confidence < hi) if hi < 1 else (confidence >= lo)
        count = int(inside.sum())
        bins.append(
            {
                "lo": float(lo),
                "hi": float(hi),
                "count": count,
                "confidence": float(confidence[inside].mean()) if count else None,
                "accuracy": float((y_pred == y_true)[inside].mean()) if count else None,
            }
        )
    pair = {"percent_agreement": _entry(rng), "kappa": _entry(rng)}
    metrics = {
        "schema": "lablens.metrics/1",
        "classes": list(classes),
        "n": n,
        "n_groups": n_groups,
        "overall": overall,
        "per_class": per_class,
        "confusion_matrix": {"labels": list(classes), "matrix": matrix.tolist()},
        "calibration": {"ece": 0.0421, "n_bins": 10, "bins": bins, "temperature": 1.37},
        "agreement": {
            "n": n - 10,
            "n_missing": 10,
            "model_vs_reader": dict(pair),
            "reader_vs_truth": dict(pair),
            "model_vs_truth": dict(pair),
        },
        "bootstrap": {"replicates": 200, "level": 0.95, "unit": "group", "seed": 7},
    }
    history = [
        {
            "epoch": e,
            "train_loss": 1.5 / e,
            "val_loss": 1.6 / e + 0.05 * e,
            "val_macro_f1": 0.5 + 0.04 * e,
            "val_accuracy": 0.55 + 0.04 * e,
            "lr": 1e-3 * 0.7**e,
        }
        for e in range(1, 8)
    ]
    return {
        "metrics": metrics,
        "y_true": y_true,
        "proba": proba,
        "ids": [f"site_a/patient_{i % n_groups:03d}/cell_{i:04d}.png" for i in range(n)],
        "images": rng.integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8),
        "history": history,
        "classes": list(classes),
        "n_errors": int((y_pred != y_true).sum()),
    }


def _write(tmp_path: Path, case: dict[str, Any], **kwargs: Any) -> str:
    path = write_report(
        tmp_path / "out" / "report.html",
        case["metrics"],
        y_true=case["y_true"],
        proba=case["proba"],
        classes=case["classes"],
        ids=case["ids"],
        **kwargs,
    )
    assert path.is_file()
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def case() -> dict[str, Any]:
    return make_case()


@pytest.fixture(scope="module")
def full_html(case: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    return _write(
        tmp_path_factory.mktemp("full"),
        case,
        images=case["images"],
        history=case["history"],
        subtitle="Site A <b>pilot</b>",
        run_info={"model": "efficientnet_lite0", "versions": {"torch": "2.14.1"}},
    )


def test_report_is_self_contained(full_html: str) -> None:
    assert full_html.lstrip().startswith("<!DOCTYPE html>")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", full_html, re.IGNORECASE)
    assert "http://" not in full_html and "https://" not in full_html
    assert "<script" not in full_html.lower()
    assert "<link" not in full_html.lower()


def test_report_contains_classes_and_cis(full_html: str) -> None:
    for name in CLASSES[:-1]:
        assert name in full_html
    assert full_html.count(KNOWN_TEXT) >= 1  # macro F1 in the all-metrics table
    # per-class cells: estimate, then its CI on a second line (neutrophil recall)
    assert '0.953<span class="ci">0.921–0.978</span>' in full_html
    assert "0.921–0.978" in full_html  # headline card CI
    assert "95 % CI" in full_html
    assert "T = 1.370" in full_html
    assert "Agreement with a second reader" in full_html
    assert "efficientnet_lite0" in full_html and "versions.torch" in full_html


def test_user_strings_are_escaped(full_html: str) -> None:
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in full_html
    assert "Site A &lt;b&gt;pilot&lt;/b&gt;" in full_html


def test_none_metric_renders_as_dash(full_html: str) -> None:
    card = re.search(r'<div class="label">MCC</div>\s*<div class="value">([^<]*)</div>', full_html)
    assert card is not None and card.group(1) == "–"
    row = re.search(r"<td>Matthews correlation \(MCC\)</td><td class=\"num\">([^<]*)</td>", full_html)
    assert row is not None and row.group(1) == "–"


def test_figures_and_thumbnails_embedded(full_html: str, case: dict[str, Any]) -> None:
    figures = 6  # confusion ×2, ROC, per-class bars, reliability, training history
    thumbnails = min(24, case["n_errors"])
    assert case["n_errors"] > 0
    assert full_html.count(DATA_URI) >= figures + thumbnails
    assert 'id="training"' in full_html
    assert len(full_html.encode()) < 1_500_000


def test_report_without_images_or_history(tmp_path: Path) -> None:
    small = make_case(["ring <form>", "trophozoite", "schizont"], n=30, n_groups=10, seed=1)
    metrics = {**small["metrics"], "agreement": None}
    metrics["calibration"] = {k: v for k, v in metrics["calibration"].items() if k != "temperature"}
    html = _write(tmp_path, {**small, "metrics": metrics}, max_errors=5)
    assert 'id="training"' not in html
    assert 'id="agreement"' not in html
    assert "T = " not in html
    assert html.count(DATA_URI) == 5  # figures only, no thumbnails
    assert "ring &lt;form&gt;" in html and "<form>" not in html
    predicted = small["proba"].argmax(axis=1)
    wrong = np.flatnonzero(predicted != small["y_true"])
    most_confident = wrong[np.argmax(small["proba"][wrong, predicted[wrong]])]
    assert f'<td class="id">{small["ids"][most_confident]}</td>' in html  # gallery lists ids only


def test_gallery_orders_most_confident_errors_first(tmp_path: Path) -> None:
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.05, 0.95]])
    y_true = np.array([0, 0, 0, 1])
    metrics = {
        "schema": "lablens.metrics/1",
        "classes": ["a", "b"],
        "n": 4,
        "n_groups": 4,
        "overall": {},
        "per_class": {},
        "calibration": None,
        "agreement": None,
        "bootstrap": {},
    }
    path = write_report(
        tmp_path / "r.html",
        metrics,
        y_true=y_true,
        proba=proba,
        classes=["a", "b"],
        ids=["s0", "s1", "s2", "s3"],
        max_errors=1,
    )
    html = path.read_text(encoding="utf-8")
    assert ">s2<" in html and ">s1<" not in html
    assert "of 2 errors in total" in html


def test_mismatched_inputs_raise(tmp_path: Path, case: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="ids"):
        write_report(
            tmp_path / "r.html",
            case["metrics"],
            y_true=case["y_true"],
            proba=case["proba"],
            classes=list(CLASSES),
            ids=case["ids"][:-1],
        )
    with pytest.raises(ValueError, match="proba"):
        write_report(
            tmp_path / "r.html",
            case["metrics"],
            y_true=case["y_true"],
            proba=case["proba"][:, :3],
            classes=list(CLASSES),
            ids=case["ids"],
        )


def test_formatting_helpers() -> None:
    assert format_ci(KNOWN_ENTRY) == KNOWN_TEXT
    assert format_ci({"value": 0.5, "ci": None}) == "0.500"
    assert format_ci({"value": None, "ci": [0.1, 0.2]}) == "–"
    assert format_ci(None) == "–"
    assert format_value(float("nan")) == "–"


def test_plots_return_png(case: dict[str, Any]) -> None:
    outputs = [
        plots.confusion_matrix_png([[3, 1], [0, 0]], ["a", "b"], normalize=True),
        plots.reliability_png([]),
        plots.history_png([{"epoch": 1, "train_loss": 1.0}]),
        plots.per_class_bar_png(case["metrics"]["per_class"], ["$x$ cost"], ("f1",)),
    ]
    assert all(png.startswith(PNG_MAGIC) for png in outputs)


def test_roc_skips_classes_without_positives() -> None:
    y_true = np.array([0, 0, 1, 1])
    proba = np.array([[0.8, 0.2, 0.0], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1]])
    assert plots.roc_curves_png(y_true, proba, ["a", "b", "never"]).startswith(PNG_MAGIC)
    assert plots.roc_curves_png(np.zeros(3, dtype=int), np.full((3, 2), 0.5), ["a", "b"]).startswith(
        PNG_MAGIC
    )
