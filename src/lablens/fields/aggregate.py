"""Per-cell probabilities → the sample's answer, with the rules a laboratory reports by.

* :func:`differential` — a white-cell differential like CellaVision's: cells whose top probability is below
  ``min_confidence`` are *unidentified* (left for the technician) and not in the percentages; each class gets
  its percentage with a Wilson 95 % interval; flags for immature or abnormal cells, too few cells and many
  unidentified. Predicted non-white classes (a PBC model's ``platelet``) are counted apart.
* :func:`ana_report` — positive/negative, the dominant pattern with its ICAP code, mixed patterns with their cell
  shares, the pattern of each compartment apart (nuclear, cytoplasmic, mitotic, as ICAP reports them) and the
  patterns seen on mitotic cells (mitoses separate, for example, homogeneous from speckled sera).
* :func:`verdict` — one answer from several images of one patient (nailfold frames): the mean probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from statsmodels.stats.proportion import proportion_confint

from lablens.fields.icap import FAMILIES, icap_code, pattern_family

IMMATURE = ("ig", "erythroblast", "blast", "promyelocyte", "myelocyte", "metamyelocyte")
NON_WBC = ("platelet", "rbc", "artefact", "smudge")
NEGATIVE = ("negative", "neg", "NEG")
#: a second pattern is reported when it is the top class of this share of the confident cells
MIXED_SHARE = 0.2


def _ci(k: int, n: int) -> list[float] | None:
    if n == 0:
        return None  # not estimable: no cell to count
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return [round(100 * float(lo), 2), round(100 * float(hi), 2)]


def _rounded(classes: Sequence[str], values: np.ndarray) -> dict[str, float | None]:
    """Per class, rounded; ``None`` where not estimable (no cell)."""
    return {c: round(float(v), 4) if np.isfinite(v) else None for c, v in zip(classes, values, strict=True)}


def differential(
    proba: np.ndarray,
    classes: Sequence[str],
    *,
    min_confidence: float = 0.5,
    min_cells: int = 100,
    immature: Sequence[str] = IMMATURE,
    non_wbc: Sequence[str] = NON_WBC,
    max_unidentified: float = 0.10,
) -> dict[str, Any]:
    """White-cell differential from per-cell probabilities (``N × C``, rows in cell order).

    Returns a JSON-ready dict: ``counts``, ``percent`` and ``ci95`` per white-cell class (percent of identified
    white cells; ``None`` when no cell was identified: not estimable), ``n_cells``, ``n_identified``,
    ``n_unidentified``, ``n_non_wbc`` (cells *called* a non-white class, per class) and ``flags``.
    """
    proba = np.asarray(proba, dtype=float).reshape(-1, len(classes))
    top = proba.argmax(axis=1) if len(proba) else np.zeros(0, dtype=int)
    conf = proba.max(axis=1) if len(proba) else np.zeros(0)
    sure = conf >= min_confidence
    wbc_classes = [c for c in classes if c not in non_wbc]
    counts = {c: int(((top == classes.index(c)) & sure).sum()) for c in wbc_classes}
    others = {c: int(((top == classes.index(c)) & sure).sum()) for c in classes if c in non_wbc}
    n_id = sum(counts.values())
    n_unid = int((~sure).sum())
    doc: dict[str, Any] = {
        "n_cells": len(proba),
        "n_identified": n_id,
        "n_unidentified": n_unid,
        "n_non_wbc": others,
        "min_confidence": min_confidence,
        "counts": counts,
        "percent": {c: round(100 * k / n_id, 2) if n_id else None for c, k in counts.items()},
        "ci95": {c: _ci(k, n_id) for c, k in counts.items()},
    }
    flags: list[str] = []
    for c in wbc_classes:
        if c.lower() in immature and counts[c] > 0:
            flags.append(f"{c}: {counts[c]} cell(s) — immature/abnormal cells present, review the smear")
    if n_id == 0:
        flags.append("no white cell identified: no differential can be given (percentages not estimable)")
    elif n_id < min_cells:
        flags.append(f"only {n_id} white cells identified (< {min_cells}): percentages have wide intervals")
    if len(proba) and n_unid / len(proba) > max_unidentified:
        flags.append(
            f"{n_unid} of {len(proba)} cells unidentified (confidence < {min_confidence:g}): review them"
        )
    doc["flags"] = flags
    return doc


def ana_report(
    proba: np.ndarray,
    classes: Sequence[str],
    mitotic: Sequence[bool] | None = None,
    *,
    min_confidence: float = 0.5,
    mixed_share: float = MIXED_SHARE,
    negative: Sequence[str] = NEGATIVE,
) -> dict[str, Any]:
    """Serum-level ANA answer from per-cell pattern probabilities.

    The sample's pattern probabilities are the mean over cells; the dominant class is their arg-max and the
    serum is positive when it is not a negative class. Mixed patterns: other positive patterns that are the
    top class of at least ``mixed_share`` of the confident cells.
    """
    proba = np.asarray(proba, dtype=float).reshape(-1, len(classes))
    n = len(proba)
    mean = proba.mean(axis=0) if n else np.full(len(classes), np.nan)
    top = proba.argmax(axis=1) if n else np.zeros(0, dtype=int)
    sure = proba.max(axis=1) >= min_confidence if n else np.zeros(0, dtype=bool)
    n_sure = int(sure.sum())
    shares = {
        c: round(float(((top == j) & sure).sum() / n_sure), 4) if n_sure else 0.0
        for j, c in enumerate(classes)
    }
    dominant = classes[int(np.nanargmax(mean))] if n else None
    positive = dominant is not None and dominant not in negative
    mixed = [c for c in classes if c != dominant and c not in negative and shares[c] >= mixed_share]
    doc: dict[str, Any] = {
        "n_cells": n,
        "n_confident": n_sure,
        "result": None if dominant is None else ("positive" if positive else "negative"),
        "dominant_pattern": dominant,
        "mean_probability": _rounded(classes, mean),
        "cell_share": shares,
        "mixed_patterns": mixed,
        "icap": icap_code(dominant) if positive and dominant else None,
        "compartments": compartment_calls(classes, shares, dominant if positive else None, mixed_share),
    }
    unknown = [c for c in classes if c not in negative and pattern_family(c) is None]
    if unknown:
        doc["patterns_without_icap_family"] = unknown
    if mitotic is not None:
        m = np.asarray(mitotic, dtype=bool)
        doc["n_mitotic"] = int(m.sum())
        doc["mitotic_patterns"] = {
            c: int(((top == j) & m).sum()) for j, c in enumerate(classes) if ((top == j) & m).any()
        }
    flags = []
    if n == 0:
        flags.append("no cells found: the field may be empty, out of focus or not IIF")
    elif n_sure < 0.5 * n:
        flags.append(f"only {n_sure} of {n} cells classified confidently: review the pattern by eye")
    doc["flags"] = flags
    return doc


def compartment_calls(
    classes: Sequence[str], shares: dict[str, float], dominant: str | None, mixed_share: float
) -> dict[str, dict[str, Any] | None]:
    """ICAP's report by compartment: per family (nuclear, cytoplasmic, mitotic) that the classes cover, its
    pattern (the dominant one if it is of that family, else the family's pattern with the largest share of
    confident cells, when that share is at least ``mixed_share``) with its ICAP code and share, or ``None``."""
    out: dict[str, dict[str, Any] | None] = {}
    for family in FAMILIES:
        members = [c for c in classes if pattern_family(c) == family]
        if not members:
            continue
        best = dominant if dominant in members else max(members, key=lambda c: shares[c])
        if best != dominant and shares[best] < mixed_share:
            out[family] = None
            continue
        out[family] = {"pattern": best, "icap": icap_code(best), "cell_share": shares[best]}
    return out


def verdict(proba: np.ndarray, classes: Sequence[str], *, min_images: int = 1) -> dict[str, Any]:
    """One answer over several images of one subject: the class with the highest mean probability."""
    proba = np.asarray(proba, dtype=float).reshape(-1, len(classes))
    n = len(proba)
    mean = proba.mean(axis=0) if n else np.full(len(classes), np.nan)
    doc: dict[str, Any] = {
        "n_images": n,
        "verdict": classes[int(np.nanargmax(mean))] if n else None,
        "mean_probability": _rounded(classes, mean),
        "per_image": [classes[int(j)] for j in proba.argmax(axis=1)] if n else [],
    }
    doc["flags"] = [] if n >= min_images else [f"only {n} image(s); at least {min_images} expected"]
    return doc
