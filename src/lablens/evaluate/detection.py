"""Detection scores: precision, recall and F1 at an IoU threshold, per object class.

Matching follows Pascal VOC: detections are taken in decreasing score; each claims the unmatched truth box of
its class with the highest IoU, and is a true positive when that IoU reaches ``iou_threshold``. Every truth box
is matched at most once; unmatched detections are false positives, unmatched truth boxes false negatives.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """Pairwise IoU of boxes ``(x0, y0, x1, y1)`` (``x1``/``y1`` exclusive), shape ``len(a) × len(b)``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    A = np.asarray(a, dtype=float)[:, None, :]
    B = np.asarray(b, dtype=float)[None, :, :]
    iw = np.clip(np.minimum(A[..., 2], B[..., 2]) - np.maximum(A[..., 0], B[..., 0]), 0, None)
    ih = np.clip(np.minimum(A[..., 3], B[..., 3]) - np.maximum(A[..., 1], B[..., 1]), 0, None)
    inter = iw * ih
    area_a = (A[..., 2] - A[..., 0]) * (A[..., 3] - A[..., 1])
    area_b = (B[..., 2] - B[..., 0]) * (B[..., 3] - B[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match(
    pred: Sequence[Box], scores: Sequence[float], truth: Sequence[Box], iou_threshold: float = 0.5
) -> np.ndarray:
    """For each prediction, the index of the truth box it matched, or -1 (a false positive)."""
    ious = iou_matrix(pred, truth)
    taken = np.zeros(len(truth), dtype=bool)
    out = np.full(len(pred), -1, dtype=int)
    for i in np.argsort(-np.asarray(scores, dtype=float), kind="stable"):
        if len(truth) == 0:
            break
        cand = np.where(taken, -1.0, ious[i])
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            taken[j] = True
            out[i] = j
    return out


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else float("nan")

    def as_dict(self) -> dict[str, float | int]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


def score_image(
    pred: Iterable[tuple[str, Box, float]],
    truth: Iterable[tuple[str, Box]],
    classes: Iterable[str],
    iou_threshold: float = 0.5,
    totals: dict[str, Counts] | None = None,
) -> dict[str, Counts]:
    """Add one image's per-class counts to ``totals`` (created when omitted) and return it.

    Args:
        pred: ``(label, box, score)`` per detection.
        truth: ``(label, box)`` per annotated object.
        classes: the classes to score (others are ignored on both sides).
    """
    totals = totals if totals is not None else {}
    pred, truth = list(pred), list(truth)
    for c in classes:
        p = [(b, s) for lab, b, s in pred if lab == c]
        t = [b for lab, b in truth if lab == c]
        m = match([b for b, _ in p], [s for _, s in p], t, iou_threshold)
        tp = int((m >= 0).sum())
        k = totals.setdefault(c, Counts())
        k.tp += tp
        k.fp += len(p) - tp
        k.fn += len(t) - tp
    return totals
