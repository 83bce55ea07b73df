"""The registered field detectors on drawn fields whose objects are known exactly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lablens.errors import UnknownNameError
from lablens.evaluate.detection import iou_matrix
from lablens.fields.detection import create_detector, list_detectors

BG = (232, 226, 214)
RBC = (205, 150, 150)
NUC = (105, 80, 190)


def _smear(
    nuclei: list[tuple[int, int, int]], platelets: list[tuple[int, int]], size: int = 400
) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = BG
    for x in range(30, size, 95):
        for y in range(30, size, 95):
            cv2.circle(img, (x, y), 40, RBC, -1)
    for x, y, r in nuclei:
        cv2.circle(img, (x, y), int(r * 1.4), (200, 190, 215), -1)  # pale cytoplasm
        cv2.circle(img, (x, y), r, NUC, -1)
    for x, y in platelets:
        cv2.circle(img, (x, y), 6, NUC, -1)
    return img


def test_registry_lists_both_modalities() -> None:
    assert {"smear", "nuclei"} <= set(list_detectors())
    with pytest.raises(UnknownNameError, match="unknown detector 'nope'; choose one of cells"):
        create_detector("nope")


def test_smear_detector_finds_white_cells_and_platelets() -> None:
    img = _smear([(120, 140, 45), (300, 280, 40)], [(330, 60)])
    dets = create_detector("smear", um_per_px=0.075).detect(img)
    wbc = [d for d in dets if d.label == "wbc"]
    plt = [d for d in dets if d.label == "platelet"]
    assert len(wbc) == 2 and len(plt) == 1
    truth = [(120 - 63, 140 - 63, 120 + 63, 140 + 63), (300 - 56, 280 - 56, 300 + 56, 280 + 56)]
    ious = iou_matrix([d.box for d in wbc], truth)
    assert ious.max(axis=0).min() > 0.5
    assert len([d for d in dets if d.label == "rbc"]) >= 10


def test_smear_detector_joins_lobes_and_drops_edge_slivers() -> None:
    img = _smear([], [])
    for dx in (-50, 0, 50):  # three lobes of one neutrophil, 6 px (0.45 µm) apart
        cv2.circle(img, (200 + dx, 200), 22, NUC, -1)
    cv2.circle(img, (-30, 100), 40, NUC, -1)  # a nucleus almost entirely outside the field
    wbc = [
        d for d in create_detector("smear", um_per_px=0.075, find_rbc=False).detect(img) if d.label == "wbc"
    ]
    assert len(wbc) == 1
    assert wbc[0].box[0] < 200 - 72 and wbc[0].box[2] > 200 + 72


def test_smear_detector_needs_a_scale() -> None:
    with pytest.raises(ValueError, match="um_per_px"):
        create_detector("smear", um_per_px=None).detect(_smear([], []))


def _iif(centres: list[tuple[int, int]], bright: float = 180.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    g = rng.normal(12, 2, (480, 640)).astype(np.float32)
    for x, y in centres:
        cv2.ellipse(g, (x, y), (55, 40), 30, 0, 360, bright, -1)
    img = np.zeros((480, 640, 3), np.uint8)
    img[..., 1] = np.clip(g, 0, 255).astype(np.uint8)
    return img


def test_nuclei_detector_counts_nuclei_and_ignores_scale_bar() -> None:
    centres = [(100, 100), (300, 110), (500, 120), (150, 330), (420, 360)]
    img = _iif(centres)
    img[5:55, 400:620, 1] = 255  # a burned-in scale bar with its label
    det = create_detector("nuclei", um_per_px=0.093, ignore_regions=[(390, 0, 630, 60)])
    found = det.detect(img)
    assert len(found) == len(centres)
    got = sorted(d.center for d in found)
    for (gx, gy), (tx, ty) in zip(got, sorted(centres), strict=True):
        assert abs(gx - tx) < 6 and abs(gy - ty) < 6
    assert len(create_detector("nuclei", um_per_px=0.093).detect(img)) > len(centres)  # bar not ignored


def test_nuclei_detector_works_on_a_dim_negative_field_and_marks_small_bright_mitoses() -> None:
    dim = _iif([(100, 100), (300, 300), (500, 150)], bright=30.0)  # 18 grey levels above a background of 12
    assert len(create_detector("nuclei", um_per_px=0.093).detect(dim)) == 3
    img = _iif([(100, 100), (300, 110), (500, 120), (150, 330)], bright=90.0)
    cv2.rectangle(img, (425, 320), (465, 400), (0, 255, 0), -1)  # a metaphase plate: small, bright
    found = create_detector("nuclei", um_per_px=0.093).detect(img)
    mitotic = [d for d in found if d.attrs["mitotic"]]
    assert len(found) == 5 and len(mitotic) == 1 and 425 <= mitotic[0].center[0] <= 465
