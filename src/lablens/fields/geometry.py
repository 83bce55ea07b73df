"""Small geometry shared by the field detectors: structuring discs, point-in-box, boxes at the field edge."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def disc(radius_px: float) -> np.ndarray:
    """An elliptic structuring element of radius ``radius_px`` (at least 1)."""
    r = max(1, round(radius_px))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def inside(x: float, y: float, box: Sequence[float]) -> bool:
    """Whether ``(x, y)`` lies in the ``(x0, y0, x1, y1)`` box (``x1``/``y1`` exclusive)."""
    return box[0] <= x < box[2] and box[1] <= y < box[3]


def touches_edge(box: Sequence[int], shape: tuple[int, ...]) -> bool:
    """Whether an ``(x0, y0, x1, y1)`` box reaches the border of an image of ``shape`` (H, W, ...)."""
    x0, y0, x1, y1 = box
    return y0 <= 0 or x0 <= 0 or y1 >= shape[0] or x1 >= shape[1]
