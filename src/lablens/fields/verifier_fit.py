"""Fitting a white-cell verifier (:class:`~lablens.fields.verifier.WbcVerifier`) on annotated smear fields.

Kept apart from the verifier itself: fitting runs the smear detector to find nucleus candidates, and the smear
detector uses a fitted verifier, so the two may not import each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from lablens.errors import SettingError
from lablens.fields.brightfield import SmearDetector
from lablens.fields.geometry import inside
from lablens.fields.verifier import (
    CLASSIFIER_FEATURES,
    DIRECTIONS,
    EXTENT_FEATURES,
    LGB_PARAMS,
    Candidate,
    TrainingField,
    WbcVerifier,
    candidates,
    classifier_row,
    extent_row,
)


def _positives(cands: list[Candidate], boxes: list[tuple[float, float, float, float]]) -> tuple[dict, set]:
    """Candidate → truth box for the largest candidate inside each box; and every candidate inside one."""
    owner: dict[int, int] = {}  # truth index -> candidate index (the largest inside)
    within: set[int] = set()
    for i, c in enumerate(cands):
        cx, cy = (c.box[0] + c.box[2]) / 2, (c.box[1] + c.box[3]) / 2
        hits = [j for j, b in enumerate(boxes) if inside(cx, cy, b)]
        if hits:
            j = min(hits, key=lambda j: (boxes[j][2] - boxes[j][0]) * (boxes[j][3] - boxes[j][1]))
            within.add(i)
            if j not in owner or cands[owner[j]].area_um2 < c.area_um2:
                owner[j] = i
    return {i: j for j, i in owner.items()}, within


def _rows(f: TrainingField, cands: list[Candidate], positives: dict[int, int], within: set[int]) -> tuple:
    """The classifier rows (and labels) and extent rows (and targets, µm) of one field."""
    X_clf, y_clf, X_ext, y_ext = [], [], [], []
    for i, c in enumerate(cands):
        if i in within and i not in positives:
            continue  # a detached lobe: the containment rule removes it at inference
        X_clf.append(classifier_row(c))
        y_clf.append(int(i in positives))
    h, w = f.image.shape[:2]
    for i, j in positives.items():
        c = cands[i]
        tx0, ty0, tx1, ty1 = f.boxes[j]
        x0, y0, x1, y1 = c.box
        truth_ext = {"left": x0 - tx0, "right": tx1 - x1, "up": y0 - ty0, "down": ty1 - y1}
        cut = {"left": tx0 <= 0, "right": tx1 >= w, "up": ty0 <= 0, "down": ty1 >= h}
        for d in DIRECTIONS:
            if not cut[d]:  # the truth box is cut by the field edge: its true extent is unknown
                X_ext.append(extent_row(c, d, f.um_per_px))
                y_ext.append(truth_ext[d] * f.um_per_px)
    return X_clf, y_clf, X_ext, y_ext


def fit_wbc_verifier(
    fields: Iterable[TrainingField],
    detector_kwargs: dict[str, Any] | None = None,
    candidate_threshold: float = 32.0,
    min_candidate_um2: float = 8.0,
    threshold: float = 0.5,
    rounds: int = 300,
    seed: int = 0,
) -> WbcVerifier:
    """Fit a verifier on annotated fields.

    A candidate is a positive when its nucleus centre lies in a truth box and it is that box's largest
    candidate; smaller candidates in the same box (detached lobes) are left out of the classifier's
    training, since at inference the containment rule removes them. Extents are learnt from positives,
    per direction, except where the truth box is cut by the field edge (its true extent is unknown).
    """
    import lightgbm as lgb

    X_clf: list[list[float]] = []
    y_clf: list[int] = []
    X_ext: list[list[float]] = []
    y_ext: list[float] = []
    n_fields = n_truth = n_found = 0
    for f in fields:
        det = SmearDetector(um_per_px=f.um_per_px, find_rbc=False, **(detector_kwargs or {}))
        cands = candidates(det, f.image, candidate_threshold, min_candidate_um2)
        positives, within = _positives(cands, f.boxes)
        n_fields, n_truth, n_found = n_fields + 1, n_truth + len(f.boxes), n_found + len(positives)
        for acc, rows in zip((X_clf, y_clf, X_ext, y_ext), _rows(f, cands, positives, within), strict=True):
            acc.extend(rows)
    if sum(y_clf) < 5 or len(y_clf) - sum(y_clf) < 5 or len(y_ext) < 20:
        raise SettingError(
            f"too few examples to fit a verifier: {sum(y_clf)} white cells and "
            f"{len(y_clf) - sum(y_clf)} other candidates on {n_fields} fields (need ≥ 5 of each)"
        )
    params = {**LGB_PARAMS, "seed": seed}
    clf = lgb.train(
        {**params, "objective": "binary"},
        lgb.Dataset(np.array(X_clf, dtype=float), np.array(y_clf), feature_name=list(CLASSIFIER_FEATURES)),
        num_boost_round=rounds,
    )
    ext = lgb.train(
        {**params, "objective": "huber", "alpha": 1.0},
        lgb.Dataset(np.array(X_ext, dtype=float), np.array(y_ext), feature_name=list(EXTENT_FEATURES)),
        num_boost_round=rounds,
    )
    info = {
        "fields": n_fields,
        "truth_cells": n_truth,
        "candidate_recall": round(n_found / max(n_truth, 1), 4),
        "positives": int(sum(y_clf)),
        "negatives": int(len(y_clf) - sum(y_clf)),
        "extent_rows": len(y_ext),
        "detector_kwargs": dict(detector_kwargs or {}),
        "rounds": rounds,
        "seed": seed,
    }
    return WbcVerifier(candidate_threshold, min_candidate_um2, threshold, clf, ext, info)
