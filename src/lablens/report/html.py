"""Self-contained HTML evaluation report (figures as base64 PNG, inline CSS, no JavaScript).

The report is rendered from the ``lablens.metrics/1`` document produced by the evaluation step plus the
raw arrays (labels, probabilities, sample identifiers and optional thumbnails) that the figures and the
error gallery need. Every user-supplied string goes through Jinja2 autoescaping.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from lablens.errors import SettingError
from lablens.report import plots

Explainer = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (N×S×S×3 uint8, N class indices) → N overlays

__all__ = ["format_ci", "format_ci_range", "format_value", "render_report", "thumbnail_b64", "write_report"]

MISSING = "–"
THUMBNAIL_PX = 96
LOW_SUPPORT = 20
TEMPLATE_NAME = "report.html.j2"

METRIC_LABELS: dict[str, str] = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "top_2_accuracy": "Top-2 accuracy",
    "top_3_accuracy": "Top-3 accuracy",
    "macro_precision": "Macro precision (PPV)",
    "macro_recall": "Macro sensitivity (recall)",
    "macro_specificity": "Macro specificity",
    "macro_npv": "Macro NPV",
    "macro_f1": "Macro F1",
    "macro_jaccard": "Macro Jaccard",
    "weighted_precision": "Weighted precision (PPV)",
    "weighted_recall": "Weighted sensitivity (recall)",
    "weighted_specificity": "Weighted specificity",
    "weighted_npv": "Weighted NPV",
    "weighted_f1": "Weighted F1",
    "weighted_jaccard": "Weighted Jaccard",
    "mcc": "Matthews correlation (MCC)",
    "kappa": "Cohen's κ",
    "macro_auc": "Macro AUC (one-vs-rest)",
    "log_loss": "Log loss",
    "brier": "Brier score",
    "ece": "Expected calibration error (ECE)",
}
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece"})
HEADLINE_METRICS: tuple[tuple[str, str], ...] = (
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("macro_f1", "Macro F1"),
    ("macro_recall", "Macro sensitivity"),
    ("macro_specificity", "Macro specificity"),
    ("mcc", "MCC"),
    ("kappa", "Cohen's κ"),
    ("macro_auc", "Macro AUC"),
    ("top_2_accuracy", "Top-2 accuracy"),
    ("ece", "ECE"),
)
PER_CLASS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("precision", "Precision (PPV)"),
    ("recall", "Sensitivity (recall)"),
    ("specificity", "Specificity"),
    ("npv", "NPV"),
    ("f1", "F1"),
    ("jaccard", "Jaccard"),
    ("auc", "AUC"),
)
AGREEMENT_ROWS: tuple[tuple[str, str], ...] = (
    ("model_vs_reader", "Model vs second reader"),
    ("reader_vs_truth", "Second reader vs reference"),
    ("model_vs_truth", "Model vs reference"),
)


# --------------------------------------------------------------------------------------------- formatting


def _finite(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None when missing, non-numeric or NaN/inf."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_value(value: Any, digits: int = 3) -> str:
    """Format a number with ``digits`` decimals; None/NaN/non-numeric become "–".

    Args:
        value: The number to format.
        digits: Decimal places.

    Returns:
        The formatted string.
    """
    number = _finite(value)
    return MISSING if number is None else f"{number:.{digits}f}"


def _ci_bounds(entry: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """Extract finite ``(lo, hi)`` from a ``{"value", "ci"}`` entry, or None."""
    if not isinstance(entry, Mapping):
        return None
    ci = entry.get("ci")
    if not isinstance(ci, Sequence) or isinstance(ci, str) or len(ci) != 2:
        return None
    lo, hi = _finite(ci[0]), _finite(ci[1])
    return None if lo is None or hi is None else (lo, hi)


def format_ci_range(entry: Mapping[str, Any] | None, digits: int = 3) -> str:
    """Format only the confidence interval of an entry as ``"0.921–0.978"`` ("–" if absent)."""
    bounds = _ci_bounds(entry)
    return MISSING if bounds is None else f"{bounds[0]:.{digits}f}–{bounds[1]:.{digits}f}"


def format_ci(entry: Mapping[str, Any] | None, digits: int = 3) -> str:
    """Format a ``{"value": v, "ci": [lo, hi]}`` entry as ``"0.953 (0.921–0.978)"``.

    Args:
        entry: The metric entry; None, a missing value or a missing CI are tolerated.
        digits: Decimal places.

    Returns:
        ``"–"`` without a value, the bare value without a CI, otherwise value and CI.
    """
    value = entry.get("value") if isinstance(entry, Mapping) else None
    text = format_value(value, digits)
    if text == MISSING or _ci_bounds(entry) is None:
        return text
    return f"{text} ({format_ci_range(entry, digits)})"


def _format_info(value: Any) -> str:
    """Format a run-info value: lists joined by commas, floats compact, None as "–"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_format_info(item) for item in value) or MISSING
    return str(value)


def _flatten(info: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested mappings into ``("parent.child", formatted value)`` rows, in insertion order."""
    rows: list[tuple[str, str]] = []
    for key, value in info.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(_flatten(value, f"{name}."))
        else:
            rows.append((name, _format_info(value)))
    return rows


# --------------------------------------------------------------------------------------------- images


def _b64(png: bytes) -> str:
    """Base64-encode PNG bytes for a ``data:image/png;base64,`` URI."""
    return base64.b64encode(png).decode("ascii")


def _to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """Coerce H×W, H×W×1, H×W×3/4 arrays (uint8 or float in [0, 1]) to H×W×3 uint8."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        scale = 255.0 if np.nanmax(array, initial=0.0) <= 1.0 else 1.0
        array = np.clip(np.nan_to_num(array.astype(float) * scale), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return array[:, :, :3]


def thumbnail_b64(image: np.ndarray, max_px: int = THUMBNAIL_PX) -> str:
    """Downscale an image so its longer side is at most ``max_px`` and return it as base64 PNG.

    Args:
        image: H×W×3 uint8 (grayscale and float images in [0, 1] are converted).
        max_px: Maximum side length in pixels.

    Returns:
        Base64-encoded PNG (without the ``data:`` prefix).
    """
    from PIL import Image

    thumb = Image.fromarray(_to_uint8_rgb(image), mode="RGB")
    thumb.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG", optimize=True)
    return _b64(buffer.getvalue())


# --------------------------------------------------------------------------------------------- sections


def _validate_inputs(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    ids: Sequence[str],
    images: np.ndarray | None,
) -> None:
    """Raise ValueError when the arrays disagree in length or class count."""
    n, k = len(y_true), len(classes)
    if proba.ndim != 2 or proba.shape != (n, k):
        raise ValueError(f"proba must have shape (N, K) = ({n}, {k}), got {proba.shape}")
    if len(ids) != n:
        raise ValueError(f"ids has {len(ids)} entries but y_true has {n}")
    if n and (y_true.min() < 0 or y_true.max() >= k):
        raise ValueError(f"y_true must hold class indices in [0, {k - 1}]")
    if images is not None and len(images) != n:
        raise ValueError(f"images has {len(images)} entries but y_true has {n}")


def _headline(overall: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Cards for the headline metrics (value, CI, direction hint)."""
    cards = []
    for key, label in HEADLINE_METRICS:
        entry = overall.get(key)
        cards.append(
            {
                "key": key,
                "label": label,
                "value": format_value(entry.get("value") if isinstance(entry, Mapping) else None),
                "ci": format_ci_range(entry),
                "lower_is_better": key in LOWER_IS_BETTER,
            }
        )
    return cards


def _all_overall(overall: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows for the table of every overall metric: known metrics first, then any extra keys."""
    keys = [key for key in METRIC_LABELS if key in overall] + [
        key for key in overall if key not in METRIC_LABELS
    ]
    return [
        {
            "key": key,
            "label": METRIC_LABELS.get(key, key.replace("_", " ")),
            "text": format_ci(overall.get(key)),
            "lower_is_better": key in LOWER_IS_BETTER,
        }
        for key in keys
    ]


def _per_class_rows(metrics: Mapping[str, Any], classes: Sequence[str]) -> list[dict[str, Any]]:
    """One table row per class: support, each metric as "v (lo–hi)", and a low-support flag."""
    per_class = metrics.get("per_class") or {}
    rows = []
    for name in classes:
        stats = per_class.get(name) or {}
        support = stats.get("support")
        rows.append(
            {
                "name": name,
                "support": MISSING if support is None else int(support),
                "low_support": support is not None and int(support) < LOW_SUPPORT,
                "cells": [_cell(stats.get(key)) for key, _ in PER_CLASS_COLUMNS],
            }
        )
    return rows


def _cell(entry: Mapping[str, Any] | None) -> dict[str, str]:
    """A table cell: the estimate, and its CI on a second, smaller line (keeps wide tables readable)."""
    value = entry.get("value") if isinstance(entry, Mapping) else None
    text = format_value(value)
    return {"value": text, "ci": format_ci_range(entry) if text != MISSING else ""}


def _average_rows(overall: Mapping[str, Any], n: Any) -> list[dict[str, Any]]:
    """Macro- and weighted-average rows for the per-class table footer."""
    rows = []
    for prefix, label in (("macro", "Macro average"), ("weighted", "Weighted average")):
        cells = [_cell(overall.get(f"{prefix}_{key}")) for key, _ in PER_CLASS_COLUMNS]
        if any(cell["value"] != MISSING for cell in cells):
            rows.append({"name": label, "support": MISSING if n is None else n, "cells": cells})
    return rows


def _confusion(
    metrics: Mapping[str, Any], y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """Confusion labels and matrix from the metrics document, or recomputed from the arrays."""
    document = metrics.get("confusion_matrix") or {}
    if document.get("matrix") is not None:
        labels = list(document.get("labels") or classes)
        return labels, np.asarray(document["matrix"], dtype=float)
    k = len(classes)
    matrix = np.zeros((k, k), dtype=float)
    if len(y_true):
        np.add.at(matrix, (y_true, proba.argmax(axis=1)), 1)
    return list(classes), matrix


def _error_gallery(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    ids: Sequence[str],
    images: np.ndarray | None,
    max_errors: int,
    explain: Explainer | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """The most confident wrong predictions, highest predicted probability first.

    With ``explain`` (and images) each item also gets a Grad-CAM overlay for its predicted class.

    Returns:
        The gallery items (at most ``max_errors``) and the total number of errors.
    """
    predicted = proba.argmax(axis=1) if len(y_true) else np.zeros(0, dtype=int)
    wrong = np.flatnonzero(predicted != y_true)
    confidence = proba[wrong, predicted[wrong]] if len(wrong) else np.zeros(0)
    order = wrong[np.argsort(-confidence, kind="stable")][: max(int(max_errors), 0)]
    cams = (
        explain(images[order], predicted[order])
        if explain is not None and images is not None and len(order)
        else None
    )
    items = []
    for index in order:
        top = np.argsort(-proba[index], kind="stable")[:3]
        items.append(
            {
                "id": str(ids[index]),
                "name": Path(str(ids[index])).name or str(ids[index]),
                "true": classes[int(y_true[index])],
                "pred": classes[int(predicted[index])],
                "p_pred": format_value(proba[index, predicted[index]]),
                "p_true": format_value(proba[index, y_true[index]]),
                "top": [
                    {
                        "name": classes[int(j)],
                        "p": format_value(proba[index, j]),
                        "is_true": int(j) == int(y_true[index]),
                    }
                    for j in top
                ],
                "thumb": None if images is None else thumbnail_b64(images[index]),
                "cam": None if cams is None else thumbnail_b64(cams[len(items)]),
            }
        )
    return items, len(wrong)


def _agreement(metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    """Rows for the second-reader agreement table, or None when no second reading exists."""
    agreement = metrics.get("agreement")
    if not isinstance(agreement, Mapping):
        return None
    rows = []
    for key, label in AGREEMENT_ROWS:
        pair = agreement.get(key) or {}
        rows.append(
            {
                "label": label,
                "percent": format_ci(pair.get("percent_agreement")),
                "kappa": format_ci(pair.get("kappa")),
            }
        )
    return {"n": agreement.get("n"), "n_missing": agreement.get("n_missing"), "rows": rows}


def _calibration(metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    """ECE, bin count, optional temperature and the reliability figure, or None without bins."""
    calibration = metrics.get("calibration")
    if not isinstance(calibration, Mapping):
        return None
    bins = calibration.get("bins") or []
    overall_ece = (metrics.get("overall") or {}).get("ece")
    temperature = calibration.get("temperature")
    ece = format_ci(overall_ece)
    if ece == MISSING:
        ece = format_value(calibration.get("ece"))
    return {
        "ece": ece,
        "n_bins": calibration.get("n_bins", len(bins)),
        "temperature": None if temperature is None else format_value(temperature),
        "figure": _b64(plots.reliability_png(bins)) if bins else None,
    }


def _bootstrap_text(bootstrap: Mapping[str, Any] | None) -> tuple[str, str]:
    """The CI label (e.g. "95 % CI") and a sentence describing the bootstrap."""
    bootstrap = bootstrap or {}
    level = _finite(bootstrap.get("level"))
    percent = f"{level * 100:g} %" if level is not None and level <= 1 else "95 %"
    label = f"{percent} CI"
    replicates = bootstrap.get("replicates")
    if replicates is None:
        return label, "Confidence intervals: bootstrap settings not recorded."
    unit = bootstrap.get("unit") or "group"
    unit_text = "groups (e.g. patients or slides), not single images" if unit == "group" else f"{unit}s"
    seed = bootstrap.get("seed")
    seed_text = "" if seed is None else f", seed {seed}"
    return label, f"{label}: bootstrap, {replicates} replicates resampling {unit_text}{seed_text}."


def _figures(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    labels: Sequence[str],
    matrix: np.ndarray,
    metrics: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] | None,
) -> dict[str, str | None]:
    """All base64 figures of the report (None where a figure does not apply)."""
    per_class = metrics.get("per_class") or {}
    return {
        "cm_counts": _b64(plots.confusion_matrix_png(matrix, labels, normalize=False)),
        "cm_norm": _b64(plots.confusion_matrix_png(matrix, labels, normalize=True)),
        "roc": _b64(plots.roc_curves_png(y_true, proba, classes)) if len(y_true) else None,
        "per_class": _b64(plots.per_class_bar_png(per_class, classes, ("recall", "specificity")))
        if per_class
        else None,
        "history": _b64(plots.history_png(history)) if history else None,
    }


# --------------------------------------------------------------------------------------------- rendering


@lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    """The Jinja2 environment (templates are package data of ``lablens.report``)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lablens.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = format_value
    env.filters["fmt_ci"] = format_ci
    return env


def _build_context(
    metrics: Mapping[str, Any],
    *,
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    ids: Sequence[str],
    images: np.ndarray | None,
    history: Sequence[Mapping[str, Any]] | None,
    title: str,
    subtitle: str | None,
    run_info: Mapping[str, Any] | None,
    max_errors: int,
    explain: Explainer | None = None,
) -> dict[str, Any]:
    """Assemble every value the template needs."""
    from lablens import __version__

    overall = metrics.get("overall") or {}
    labels, matrix = _confusion(metrics, y_true, proba, classes)
    ci_label, bootstrap_text = _bootstrap_text(metrics.get("bootstrap"))
    errors, n_errors = _error_gallery(y_true, proba, classes, ids, images, max_errors, explain)
    return {
        "title": title,
        "subtitle": subtitle,
        "generated": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip(),
        "version": __version__,
        "schema": metrics.get("schema") or MISSING,
        "n": metrics.get("n", len(y_true)),
        "n_groups": metrics.get("n_groups"),
        "groups_from": metrics.get("groups_from"),
        "classes": list(classes),
        "ci_label": ci_label,
        "bootstrap_text": bootstrap_text,
        "bootstrap_unit": (metrics.get("bootstrap") or {}).get("unit") or "group",
        "headline": _headline(overall),
        "overall_rows": _all_overall(overall),
        "per_class_columns": [label for _, label in PER_CLASS_COLUMNS],
        "per_class_rows": _per_class_rows(metrics, classes),
        "average_rows": _average_rows(overall, metrics.get("n")),
        "low_support": LOW_SUPPORT,
        "figures": _figures(y_true, proba, classes, labels, matrix, metrics, history),
        "calibration": _calibration(metrics),
        "agreement": _agreement(metrics),
        "errors": errors,
        "n_errors": n_errors,
        "has_images": images is not None,
        "thumbnail_px": THUMBNAIL_PX,
        "run_info": _flatten(run_info or {}),
        "warnings": list(metrics.get("notes") or []),
    }


def render_report(
    metrics: Mapping[str, Any],
    *,
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    ids: list[str],
    images: np.ndarray | None = None,
    history: list[dict] | None = None,
    title: str = "lablens evaluation report",
    subtitle: str | None = None,
    run_info: dict | None = None,
    max_errors: int = 24,
    explain: Explainer | None = None,
) -> str:
    """Render the report to an HTML string; see :func:`write_report` for the arguments."""
    schema = metrics.get("schema")
    if schema is not None and not str(schema).startswith("lablens.metrics/"):
        raise SettingError(f"not a lablens metrics document (schema {schema!r})")
    truth = np.asarray(y_true).astype(int).reshape(-1)
    scores = np.asarray(proba, dtype=float)
    _validate_inputs(truth, scores, classes, ids, images)
    context = _build_context(
        metrics,
        y_true=truth,
        proba=scores,
        classes=[str(c) for c in classes],
        ids=list(ids),
        images=images,
        history=history,
        title=title,
        subtitle=subtitle,
        run_info=run_info,
        max_errors=max_errors,
        explain=explain,
    )
    return template_environment().get_template(TEMPLATE_NAME).render(**context)


def write_report(
    path: str | Path,
    metrics: dict,
    *,
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    ids: list[str],
    images: np.ndarray | None = None,
    history: list[dict] | None = None,
    title: str = "lablens evaluation report",
    subtitle: str | None = None,
    run_info: dict | None = None,
    max_errors: int = 24,
    explain: Explainer | None = None,
) -> Path:
    """Write the self-contained HTML evaluation report.

    Args:
        path: Output file (parent folders are created).
        metrics: The ``lablens.metrics/1`` document (as written to ``metrics.json``).
        y_true: N integer indices into ``classes``.
        proba: N×K predicted probabilities.
        classes: The K class names.
        ids: N sample identifiers (usually file paths), aligned with ``y_true``.
        images: Optional N×H×W×3 uint8 thumbnails for the error gallery; without them the gallery
            lists identifiers only.
        history: Optional per-epoch training history for the training-curves section.
        title: Report title.
        subtitle: Optional line under the title (e.g. the dataset or site).
        run_info: Optional dict (nested dicts are flattened) shown in the run-information table.
        max_errors: Maximum number of confident errors in the gallery.
        explain: Optional ``(images, class indices) -> overlays`` (Grad-CAM) shown beside each gallery image.

    Returns:
        The path written.
    """
    html = render_report(
        metrics,
        y_true=y_true,
        proba=proba,
        classes=classes,
        ids=ids,
        images=images,
        history=history,
        title=title,
        subtitle=subtitle,
        run_info=run_info,
        max_errors=max_errors,
        explain=explain,
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
