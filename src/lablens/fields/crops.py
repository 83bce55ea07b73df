"""Cell crops at one physical scale, and overlay images.

Every crop covers ``crop_um`` micrometres around the detection's centre whatever the camera, so a classifier
trained on one microscope's crops (e.g. 36 µm CellaVision crops) sees cells at the size it learned. A crop that
runs past the field edge is filled by mirroring the field (``BORDER_REFLECT_101``), then resized with the
bundle's own :func:`~lablens.data.preprocess.to_square`.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from lablens.data.preprocess import to_square
from lablens.fields.detection import Detection

COLOURS = {  # BGR-free: these are RGB
    "wbc": (220, 30, 30),
    "nucleus": (255, 255, 255),
    "platelet": (30, 90, 220),
    "rbc": (40, 160, 60),
    "mitotic": (255, 60, 60),
    "unidentified": (240, 160, 0),
    "not evaluable": (150, 150, 150),  # quality gate (analyze labels these cells by status, not class)
    "out of distribution": (200, 0, 200),
}


def crop_cells(image: np.ndarray, detections: Sequence[Detection], side_px: float, size: int) -> np.ndarray:
    """``N×size×size×3`` uint8 crops of ``side_px`` pixels centred on each detection."""
    if not detections:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    side = max(2, round(side_px))
    half = side // 2
    pad = side
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, borderType=cv2.BORDER_REFLECT_101)
    out = np.empty((len(detections), size, size, 3), dtype=np.uint8)
    for i, det in enumerate(detections):
        cx, cy = det.center
        x0, y0 = round(cx) - half + pad, round(cy) - half + pad
        x0 = min(max(x0, 0), padded.shape[1] - side)
        y0 = min(max(y0, 0), padded.shape[0] - side)
        out[i] = to_square(padded[y0 : y0 + side, x0 : x0 + side], size, "pad")
    return out


def draw_overlay(
    image: np.ndarray, detections: Sequence[Detection], names: Sequence[str] | None = None
) -> np.ndarray:
    """The field with every detection boxed (colour by kind) and, when given, its class name written above."""
    out = np.ascontiguousarray(image.copy())
    thick = max(1, round(max(image.shape[:2]) / 400))
    scale = max(0.4, max(image.shape[:2]) / 1400)
    for i, det in enumerate(detections):
        key = "mitotic" if det.attrs.get("mitotic") else det.label
        name = names[i] if names is not None else ""
        if name in COLOURS:  # unidentified, not evaluable, out of distribution
            key = name
        colour = COLOURS.get(key, (255, 200, 0))
        x0, y0, x1, y1 = det.box
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), colour, thick)
        if name:
            cv2.putText(
                out,
                name,
                (x0 + 2, max(12, y0 - 4)),
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                colour,
                thick,
                cv2.LINE_AA,
            )
    return out
