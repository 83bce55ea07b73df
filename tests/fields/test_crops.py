"""Crops at one physical scale, mirrored at the field edge; overlays leave the input untouched."""

from __future__ import annotations

import numpy as np

from lablens.fields.crops import crop_cells, draw_overlay
from lablens.fields.detection import Detection


def test_crop_is_centred_scaled_and_mirrored_at_the_edge() -> None:
    img = np.zeros((100, 120, 3), np.uint8)
    img[48:53, 58:63] = 255  # a 5×5 white square centred on (60, 50)
    det = Detection("wbc", (50, 40, 71, 61))
    crop = crop_cells(img, [det], side_px=40, size=40)
    assert crop.shape == (1, 40, 40, 3)
    assert crop[0, 18:23, 18:23].min() == 255 and crop[0, :10].max() == 0
    small = crop_cells(img, [det], side_px=80, size=40)  # twice the field of view at the same output size
    assert small[0, 19:21, 19:21].min() == 255 and (small[0] == 255).sum() < (crop[0] == 255).sum()
    corner = crop_cells(img, [Detection("wbc", (0, 0, 6, 6))], side_px=30, size=30)
    assert corner.shape == (1, 30, 30, 3)  # runs past the edge: filled by mirroring, no error
    assert crop_cells(img, [], 30, 30).shape == (0, 30, 30, 3)


def test_overlay_draws_boxes_on_a_copy() -> None:
    img = np.full((60, 60, 3), 128, np.uint8)
    out = draw_overlay(img, [Detection("wbc", (10, 10, 30, 30))], ["neutrophil"])
    assert (img == 128).all() and (out != 128).any()
