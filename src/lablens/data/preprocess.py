"""The one deterministic resize used by training, evaluation and prediction alike.

Every image is brought to a ``size×size`` uint8 RGB square before it is cached or fed to a model,
so the preprocessing recorded in a bundle's card reproduces exactly what the model saw in training.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from lablens.errors import SettingError

ResizeMode = Literal["pad", "squash", "crop"]
RESIZE_MODES: tuple[str, ...] = ("pad", "squash", "crop")


def to_square(img: np.ndarray, size: int, mode: str = "pad") -> np.ndarray:
    """Resize an ``H×W×3`` uint8 image to ``size×size×3``.

    Args:
        img: RGB uint8 image.
        size: output side in pixels.
        mode: ``pad`` keeps the aspect ratio and fills the short side by replicating the border
            (cells keep their shape and scale); ``squash`` stretches to the square; ``crop`` takes the
            centred square and resizes it.
    """
    if mode not in RESIZE_MODES:
        raise SettingError(f"unknown resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)}")
    h, w = img.shape[:2]
    if mode == "crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        img = img[top : top + side, left : left + side]
        h = w = side
    if mode == "squash" or h == w:
        return _resize(img, size, size)
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = _resize(img, new_w, new_h)
    pad_y, pad_x = size - new_h, size - new_w
    top, left = pad_y // 2, pad_x // 2
    return cv2.copyMakeBorder(resized, top, pad_y - top, left, pad_x - left, borderType=cv2.BORDER_REPLICATE)


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    if img.shape[1] == width and img.shape[0] == height:
        return np.ascontiguousarray(img)
    shrinking = width < img.shape[1] or height < img.shape[0]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(img, (width, height), interpolation=interp)
