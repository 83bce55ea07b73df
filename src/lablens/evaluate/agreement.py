"""Agreement between the model, a second human reader and the reference truth.

Clinical studies report the percent agreement ("coincidence rate") and Cohen's kappa of the model
against a second reader, of that reader against the reference, and of the model against the
reference on the same images. Images the reader did not grade (None, NaN, empty string, or the
strings "nan"/"none"/"<na>" left by table conversions) are excluded and counted. Percent agreement
is reported as a fraction in [0, 1], like accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lablens.evaluate.bootstrap import (
    DEFAULT_LEVEL,
    DEFAULT_N_BOOT,
    Statistic,
    ci_entry,
    encode_groups,
    group_bootstrap,
)
from lablens.evaluate.metrics import accuracy, cohen_kappa, confusion_matrix

PAIRS: tuple[str, ...] = ("model_vs_reader", "reader_vs_truth", "model_vs_truth")
MISSING_STRINGS = frozenset({"", "nan", "none", "<na>", "null"})


def is_missing(value: object, classes: Sequence[str] = ()) -> bool:
    """Whether a reader label counts as missing.

    Args:
        value: One label.
        classes: Class names, which are never treated as missing.

    Returns:
        True for None, NaN/NA, blank strings and ``"nan"``/``"none"``/``"<na>"``/``"null"``
        (case-insensitive) unless the string is itself a class name.
    """
    if value is None:
        return True
    if not isinstance(value, str):
        missing = pd.isna(value)
        return bool(missing) if np.ndim(missing) == 0 else False
    text = value.strip()
    return text not in classes and text.lower() in MISSING_STRINGS


def label_codes(values: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Integer index of each label in ``labels``."""
    lookup = {label: i for i, label in enumerate(labels)}
    return np.array([lookup[v] for v in values], dtype=np.int64)


def _as_labels(values: Sequence[object] | np.ndarray) -> list[str]:
    return [str(v).strip() for v in values]


def agreement_statistic(codes: dict[str, tuple[np.ndarray, np.ndarray]], n_labels: int) -> Statistic:
    """Batched percent agreement and kappa of each rater pair.

    Args:
        codes: Pair name -> (first rater codes, second rater codes), each of shape ``(N,)``.
        n_labels: Number of distinct labels L.

    Returns:
        A statistic for :func:`lablens.evaluate.bootstrap.group_bootstrap`, mapping weights
        ``(b, N)`` to ``{"<pair>/percent_agreement": (b,), "<pair>/kappa": (b,)}``.
    """

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for pair, (first, second) in codes.items():
            cm = confusion_matrix(first, second, n_labels, weights)
            out[f"{pair}/percent_agreement"] = accuracy(cm)
            out[f"{pair}/kappa"] = cohen_kappa(cm)
        return out

    return statistic


def reader_agreement(
    y_true: Sequence[str] | np.ndarray,
    y_pred: Sequence[str] | np.ndarray,
    reader: Sequence[object] | np.ndarray,
    groups: Sequence[object] | np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict:
    """Percent agreement and Cohen's kappa between model, reader and truth with group-bootstrap CIs.

    All three comparisons use the same images: those with a reader label. Labels outside
    ``classes`` (e.g. a reader's "uncertain") are kept as extra categories: they count as
    disagreement and enter kappa as their own category.

    Args:
        y_true: Reference labels (strings), shape ``(N,)``.
        y_pred: Model labels (strings), shape ``(N,)``.
        reader: Second reader's labels; missing values are excluded.
        groups: Group (patient/specimen) per image for the bootstrap; None for one per image.
        classes: Class names; by default the sorted labels seen.
        n_boot: Bootstrap replicates (0 for no CIs).
        level: CI coverage.
        seed: Bootstrap seed.

    Returns:
        ``{"n", "n_missing", "model_vs_reader", "reader_vs_truth", "model_vs_truth"}``, each pair
        being ``{"percent_agreement": {"value", "ci"}, "kappa": {"value", "ci"}}``; values are
        None when no image has a reader label.

    Raises:
        ValueError: If the arrays differ in length.
    """
    n_total = len(y_true)
    if len(y_pred) != n_total or len(reader) != n_total:
        raise ValueError("y_true, y_pred and reader must have the same length")
    group_codes, _ = encode_groups(None if groups is None else np.asarray(groups), n_total)
    known = [str(c) for c in classes] if classes is not None else []
    keep = np.array([not is_missing(r, known) for r in reader], dtype=bool)
    n = int(keep.sum())
    truth = _as_labels(np.asarray(y_true, dtype=object)[keep])
    model = _as_labels(np.asarray(y_pred, dtype=object)[keep])
    second = _as_labels(np.asarray(reader, dtype=object)[keep])
    seen = set(truth) | set(model) | set(second)
    labels = known + sorted(seen - set(known))
    t, m, r = (label_codes(v, labels) for v in (truth, model, second))
    codes = {"model_vs_reader": (m, r), "reader_vs_truth": (r, t), "model_vs_truth": (m, t)}
    statistic = agreement_statistic(codes, len(labels))

    result: dict = {"n": n, "n_missing": n_total - n}
    if n == 0:
        empty = {"value": None, "ci": None}
        for pair in PAIRS:
            result[pair] = {"percent_agreement": dict(empty), "kappa": dict(empty)}
        return result
    point = {name: float(v[0]) for name, v in statistic(np.ones((1, n))).items()}
    intervals = group_bootstrap(statistic, group_codes[keep], n, n_boot, level, seed)
    for pair in PAIRS:
        result[pair] = {
            metric: ci_entry(point[f"{pair}/{metric}"], intervals.get(f"{pair}/{metric}"), (), n_boot)
            for metric in ("percent_agreement", "kappa")
        }
    return result
