"""One image prepared once for every handcrafted extractor: grey levels, HSV and a simple cell mask.

The mask is what a technician would outline: the cell in the middle of the crop. Brightfield stains
(Giemsa, H&E) make the cell more saturated than its pale background; fluorescence makes it brighter than
its dark background. The mask is the Otsu threshold of that contrast channel, the connected component
nearest the crop centre, holes filled. When nothing sensible is found (an empty or uniform crop) the mask
is the whole image, so every extractor still returns finite numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.measure import label

MIN_MASK_FRACTION = 0.01  # a "cell" smaller than 1 % of the crop is noise, not the cell


@dataclass(frozen=True)
class CellView:
    """Views of one ``H×W×3`` uint8 RGB crop shared by the extractors."""

    rgb: np.ndarray  # H×W×3 uint8
    grey: np.ndarray  # H×W uint8
    hsv: np.ndarray  # H×W×3 uint8 (OpenCV ranges: H 0–179, S and V 0–255)
    mask: np.ndarray  # H×W bool
    fluorescent: bool  # dark background, bright object


def is_fluorescent(grey: np.ndarray) -> bool:
    """True when the image border (the background of a centred cell) is dark."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return float(np.median(border)) < 80.0


def cell_mask(contrast: np.ndarray) -> np.ndarray:
    """Mask of the object nearest the centre in a channel where objects are high (uint8 or float)."""
    h, w = contrast.shape
    if float(contrast.max()) - float(contrast.min()) < 1e-6:
        return np.ones((h, w), bool)
    fg = contrast > threshold_otsu(contrast)
    fg = ndimage.binary_opening(fg, iterations=1)
    labels = label(fg)
    if labels.max() == 0:
        return np.ones((h, w), bool)
    cy, cx = h // 2, w // 2
    chosen = labels[cy, cx]
    if not chosen:  # the component holding the foreground pixel nearest the centre
        iy, ix = ndimage.distance_transform_edt(labels == 0, return_distances=False, return_indices=True)
        chosen = labels[iy[cy, cx], ix[cy, cx]]
    mask = ndimage.binary_fill_holes(labels == chosen)
    if mask.mean() < MIN_MASK_FRACTION:
        return np.ones((h, w), bool)
    return mask


def make_view(rgb: np.ndarray) -> CellView:
    """Prepare the shared views of one crop."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    fluorescent = is_fluorescent(grey)
    contrast = grey if fluorescent else hsv[:, :, 1]
    contrast = cv2.GaussianBlur(contrast, (0, 0), 1.0)
    return CellView(rgb=rgb, grey=grey, hsv=hsv, mask=cell_mask(contrast), fluorescent=fluorescent)
