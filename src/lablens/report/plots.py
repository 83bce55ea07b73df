"""Matplotlib figures for the evaluation report, each returned as PNG bytes.

Every function builds its own :class:`matplotlib.figure.Figure` attached to an Agg canvas, so nothing
here touches pyplot's global state or the user's selected backend; the functions are safe to call from
worker threads, notebooks and headless servers alike.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "confusion_matrix_png",
    "history_png",
    "per_class_bar_png",
    "reliability_png",
    "roc_curves_png",
]

DPI = 100
_FONT_SIZE = 9
_NOT_PLOTTED = ("epoch", "step", "time", "seconds", "duration", "elapsed", "per_s")
_METRIC_LABELS = {
    "precision": "Precision (PPV)",
    "recall": "Sensitivity (recall)",
    "specificity": "Specificity",
    "npv": "NPV",
    "f1": "F1",
    "jaccard": "Jaccard",
    "auc": "AUC",
}


def new_figure(width: float, height: float) -> Figure:
    """Create a figure bound to an Agg canvas (no pyplot involved).

    Args:
        width: Width in inches.
        height: Height in inches.

    Returns:
        A fresh, constrained-layout figure.
    """
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes (without the matplotlib version metadata chunk)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buffer.getvalue()


def _plain(text: object) -> str:
    """Make an arbitrary label safe for matplotlib text (no accidental mathtext from ``$``)."""
    return str(text).replace("$", r"\$")


def style_axes(ax: Any) -> None:
    """Apply the report's compact, light axis styling."""
    ax.tick_params(labelsize=_FONT_SIZE - 1)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, color="#e5e7eb", linewidth=0.6)
    ax.set_axisbelow(True)


def _as_float(value: Any) -> float:
    """Convert ``value`` to float, mapping ``None`` and unparsable values to NaN."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _message_png(message: str, width: float = 5.0, height: float = 2.0) -> bytes:
    """A small placeholder figure that only states why a plot is unavailable."""
    fig = new_figure(width, height)
    fig.text(0.5, 0.5, _plain(message), ha="center", va="center", fontsize=_FONT_SIZE + 1, color="#6b7280")
    return to_png(fig)


def confusion_matrix_png(
    matrix: Sequence[Sequence[float]] | np.ndarray,
    labels: Sequence[str],
    normalize: bool,
) -> bytes:
    """Plot a confusion matrix as an annotated heat map.

    Args:
        matrix: K×K counts; rows are the true class, columns the predicted class.
        labels: The K class names, in matrix order.
        normalize: If True, divide each row by its total, so the diagonal shows per-class
            sensitivity (rows without any sample stay at zero).

    Returns:
        PNG bytes.
    """
    counts = np.asarray(matrix, dtype=float)
    k = counts.shape[0]
    if counts.ndim != 2 or counts.shape != (k, k) or k != len(labels):
        raise ValueError(f"matrix must be {len(labels)}×{len(labels)}, got shape {counts.shape}")
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        shown = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        vmax = 1.0
    else:
        shown = counts
        vmax = max(float(counts.max(initial=0.0)), 1.0)

    size = min(max(4.0, 1.2 + 0.55 * k), 9.0)
    fig = new_figure(size + 0.6, size)
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    colorbar = fig.colorbar(image, ax=ax, shrink=0.8)
    colorbar.ax.tick_params(labelsize=_FONT_SIZE - 1)

    names = [_plain(label) for label in labels]
    ax.set_xticks(range(k), names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(k), names)
    ax.tick_params(labelsize=_FONT_SIZE - 1 if k <= 10 else _FONT_SIZE - 2, length=0)
    ax.set_xlabel("Predicted class", fontsize=_FONT_SIZE)
    ax.set_ylabel("True class", fontsize=_FONT_SIZE)
    ax.set_title("Row-normalised (rows sum to 1)" if normalize else "Counts", fontsize=_FONT_SIZE + 1)

    cell_font = _FONT_SIZE - 1 if k <= 8 else max(5, _FONT_SIZE - 1 - (k - 8) // 3)
    for row in range(k):
        for col in range(k):
            value = shown[row, col]
            text = f"{value:.2f}" if normalize else f"{round(value):d}"
            colour = "white" if value > 0.55 * vmax else "#111827"
            ax.text(col, row, text, ha="center", va="center", fontsize=cell_font, color=colour)
    return to_png(fig)


def roc_curves_png(
    y_true: Sequence[int] | np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
) -> bytes:
    """Plot one-vs-rest ROC curves, one per class, with the AUC in the legend.

    Classes without both positive and negative samples are skipped (their ROC is undefined).

    Args:
        y_true: N integer class indices into ``classes``.
        proba: N×K predicted probabilities.
        classes: The K class names.

    Returns:
        PNG bytes.
    """
    from sklearn.metrics import auc, roc_curve

    truth = np.asarray(y_true).astype(int)
    scores = np.asarray(proba, dtype=float)
    if scores.ndim != 2 or scores.shape != (truth.shape[0], len(classes)):
        raise ValueError(f"proba must be N×K = {truth.shape[0]}×{len(classes)}, got {scores.shape}")

    fig = new_figure(5.0, 4.2)
    ax = fig.add_subplot()
    colours = _palette(len(classes))
    plotted = 0
    for index, name in enumerate(classes):
        positives = truth == index
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = roc_curve(positives.astype(int), scores[:, index])
        ax.plot(fpr, tpr, color=colours[index], linewidth=1.4, label=f"{_plain(name)} ({auc(fpr, tpr):.3f})")
        plotted += 1
    if plotted == 0:
        return _message_png("ROC unavailable: no class has both positive and negative samples")

    ax.plot([0, 1], [0, 1], linestyle="--", color="#9ca3af", linewidth=0.8, label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 − specificity (false-positive rate)", fontsize=_FONT_SIZE)
    ax.set_ylabel("Sensitivity (true-positive rate)", fontsize=_FONT_SIZE)
    ax.set_title("One-vs-rest ROC curves (AUC)", fontsize=_FONT_SIZE + 1)
    style_axes(ax)
    ax.legend(fontsize=_FONT_SIZE - 2 if plotted <= 10 else _FONT_SIZE - 3, loc="lower right", frameon=False)
    return to_png(fig)


def _palette(n: int) -> list[Any]:
    """Return ``n`` distinguishable colours (tab10, then tab20 for larger class counts)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def reliability_png(bins: Sequence[Mapping[str, Any]]) -> bytes:
    """Plot a reliability diagram: accuracy per confidence bin, the diagonal, and bin counts.

    Args:
        bins: Dicts with keys ``lo``, ``hi``, ``count``, ``confidence`` and ``accuracy``
            (as in ``metrics["calibration"]["bins"]``). Empty bins are not drawn.

    Returns:
        PNG bytes.
    """
    if not bins:
        return _message_png("Reliability diagram unavailable: no calibration bins")
    lo = np.array([_as_float(b.get("lo")) for b in bins])
    hi = np.array([_as_float(b.get("hi")) for b in bins])
    count = np.array([_as_float(b.get("count")) for b in bins])
    confidence = np.array([_as_float(b.get("confidence")) for b in bins])
    accuracy = np.array([_as_float(b.get("accuracy")) for b in bins])
    count = np.nan_to_num(count, nan=0.0)
    filled = (count > 0) & np.isfinite(accuracy) & np.isfinite(confidence)
    width = hi - lo
    centre = (lo + hi) / 2.0

    fig = new_figure(5.0, 4.6)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(
        centre[filled],
        accuracy[filled],
        width=width[filled] * 0.95,
        color="#3b82f6",
        alpha=0.85,
        edgecolor="#1e40af",
        linewidth=0.5,
        label="accuracy",
    )
    low = np.minimum(confidence[filled], accuracy[filled])
    top.bar(
        centre[filled],
        np.abs(confidence[filled] - accuracy[filled]),
        bottom=low,
        width=width[filled] * 0.95,
        fill=False,
        edgecolor="#dc2626",
        linewidth=0.6,
        hatch="////",
        label="gap to mean confidence",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="#6b7280", linewidth=0.9, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("Accuracy", fontsize=_FONT_SIZE)
    top.set_title("Reliability diagram (top-1 confidence)", fontsize=_FONT_SIZE + 1)
    top.legend(fontsize=_FONT_SIZE - 2, loc="upper left", frameon=False)
    style_axes(top)

    bottom.bar(centre, count, width=width * 0.95, color="#9ca3af", edgecolor="#4b5563", linewidth=0.5)
    bottom.set_xlabel("Predicted confidence", fontsize=_FONT_SIZE)
    bottom.set_ylabel("Images", fontsize=_FONT_SIZE)
    style_axes(bottom)
    return to_png(fig)


def _history_series(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """Extract one per-epoch series from ``history`` (missing values become NaN)."""
    return np.array([_as_float(row.get(key)) for row in history])


def _numeric_keys(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys (in first-seen order) that hold at least one finite number somewhere in ``history``."""
    keys: list[str] = []
    for row in history:
        for key, value in row.items():
            if key in keys or isinstance(value, bool):
                continue
            if math.isfinite(_as_float(value)):
                keys.append(key)
    return keys


def _plot_series(ax: Any, epochs: np.ndarray, history: Sequence[Mapping[str, Any]], keys: list[str]) -> None:
    """Draw each ``history`` series in ``keys`` against ``epochs`` on ``ax``."""
    marker = "o" if len(epochs) <= 30 else None
    for key in keys:
        ax.plot(
            epochs,
            _history_series(history, key),
            marker=marker,
            markersize=3,
            linewidth=1.3,
            label=_plain(key.replace("_", " ")),
        )
    ax.legend(fontsize=_FONT_SIZE - 2, frameon=False)
    ax.set_xlabel("Epoch", fontsize=_FONT_SIZE)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    style_axes(ax)


def _sci_axis(ax: Any) -> None:
    """Label the y axis compactly (``0.00045``) for learning rates, without slow mathtext labels."""
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:.2g}"))


def history_png(history: Sequence[Mapping[str, Any]]) -> bytes:
    """Plot training curves: losses, validation/training metrics and (if logged) the learning rate.

    Args:
        history: One dict per epoch, e.g. ``{"epoch": 1, "train_loss": .., "val_loss": ..,
            "val_macro_f1": .., "val_accuracy": .., "lr": ..}``. Any other numeric key is plotted
            with the metrics; keys ending in ``loss`` are plotted with the losses; bookkeeping keys
            (epoch, step, timings) are not plotted.

    Returns:
        PNG bytes.
    """
    if not history:
        return _message_png("No training history recorded")
    keys = [key for key in _numeric_keys(history) if not any(word in key for word in _NOT_PLOTTED)]
    epochs = _history_series(history, "epoch")
    if not np.isfinite(epochs).all():
        epochs = np.arange(1, len(history) + 1, dtype=float)
    losses = [key for key in keys if key.endswith("loss")]
    rates = [key for key in keys if key in ("lr", "learning_rate")]
    scores = [key for key in keys if key not in losses and key not in rates]
    panels = [
        (title, group)
        for title, group in (("Loss", losses), ("Metrics", scores), ("Learning rate", rates))
        if group
    ]
    if not panels:
        return _message_png("Training history has no numeric values")

    fig = new_figure(3.3 * len(panels) + 0.4, 3.1)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, group) in zip(axes, panels, strict=True):
        _plot_series(ax, epochs, history, group)
        ax.set_title(title, fontsize=_FONT_SIZE + 1)
        if title == "Learning rate":
            _sci_axis(ax)
    return to_png(fig)


def per_class_bar_png(
    per_class: Mapping[str, Mapping[str, Any]],
    classes: Sequence[str],
    metrics: Sequence[str] = ("recall", "specificity", "f1"),
) -> bytes:
    """Plot selected per-class metrics as grouped horizontal bars with CI whiskers.

    Args:
        per_class: ``metrics["per_class"]``: class name → metric name → ``{"value", "ci"}``.
        classes: Class names, in display order (top to bottom).
        metrics: Metric names to show for each class.

    Returns:
        PNG bytes.
    """
    k, m = len(classes), len(metrics)
    if k == 0 or m == 0:
        return _message_png("No per-class metrics")
    fig = new_figure(5.6, min(max(2.4, 0.25 * k * m + 1.2), 11.0))
    ax = fig.add_subplot()
    height = 0.8 / m
    colours = ["#2563eb", "#059669", "#d97706", "#7c3aed", "#db2777", "#4b5563", "#0891b2"]
    for j, metric in enumerate(metrics):
        values, low_err, high_err = [], [], []
        for name in classes:
            entry = per_class.get(name, {}).get(metric) or {}
            value = _as_float(entry.get("value"))
            ci = entry.get("ci") or [None, None]
            lo, hi = _as_float(ci[0]), _as_float(ci[1])
            values.append(value)
            low_err.append(max(value - lo, 0.0) if math.isfinite(lo) and math.isfinite(value) else 0.0)
            high_err.append(max(hi - value, 0.0) if math.isfinite(hi) and math.isfinite(value) else 0.0)
        positions = np.arange(k) + (j - (m - 1) / 2) * height
        ax.barh(
            positions,
            np.nan_to_num(values),
            height=height * 0.9,
            color=colours[j % len(colours)],
            xerr=[low_err, high_err],
            error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#111827"},
            label=_METRIC_LABELS.get(metric, metric),
        )
    ax.set_yticks(range(k), [_plain(name) for name in classes])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("Value (whiskers: bootstrap CI)", fontsize=_FONT_SIZE)
    ax.legend(fontsize=_FONT_SIZE - 2, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0), ncols=m)
    style_axes(ax)
    ax.grid(False, axis="y")
    return to_png(fig)


def fold_boxplot_png(values: Mapping[str, Sequence[float | None]], metric: str) -> bytes:
    """Box plot of one metric's per-fold values, one box per method (folds drawn as dots).

    Args:
        values: method name → per-fold values (None/NaN are left out).
        metric: axis label.

    Returns:
        PNG bytes.
    """
    names = list(values)
    data = [[v for v in (_as_float(x) for x in values[n]) if math.isfinite(v)] for n in names]
    if not any(data):
        return _message_png(f"no finite values of {metric}")
    height = max(2.4, 0.42 * len(names) + 1.0)
    fig = new_figure(6.4, height)
    ax = fig.add_subplot()
    ax.boxplot([d or [math.nan] for d in data], orientation="horizontal", widths=0.55, showfliers=False)
    for i, d in enumerate(data, start=1):
        ax.scatter(d, [i] * len(d), s=12, color="#0f766e", alpha=0.8, zorder=3)
    ax.set_yticks(range(1, len(names) + 1), [_plain(n) for n in names])
    ax.invert_yaxis()
    ax.set_xlabel(_plain(metric), fontsize=_FONT_SIZE)
    style_axes(ax)
    return to_png(fig)
