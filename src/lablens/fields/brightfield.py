"""Brightfield blood-smear detector (May-Grünwald-Giemsa, Wright): white cells, red cells, platelets.

White cells are found by their nuclear stain: nuclei are the only large objects that are blue rather than red
(``B − R`` above ``stain_threshold``). Nuclear pixels are cleaned with a small opening, lobes of one nucleus are
joined when they lie within ``merge_gap_um`` of each other (a segmented neutrophil's lobes are separate
blobs), and a joined region far larger than one nucleus is split by a distance-transform watershed. The white
cell's box is the nucleus box widened by ``cell_expand`` (the cytoplasm is too pale to segment reliably).
Small blue objects are platelets (singles or clumps). Red cells are the saturated (coloured) foreground, holes
(central pallor) filled, split by a watershed on the distance transform.

A nucleus cut by the field edge is reported only when enough of it is inside (``edge_min_um2``): a lab
differential never counts a sliver of a cell at the edge of the frame.

Parameters are in micrometres and become pixels through ``um_per_px`` (the field's scale). Defaults were set
on the BCCD *train/val* lists (0.075 µm/px) and hold for the phantom fields (~0.2 µm/px); the BCCD *test* list
was used only to measure (benchmarks/fields.py). scikit-image and OpenCV do the image operations.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.measure import label, regionprops
from skimage.segmentation import watershed
from sklearn.base import BaseEstimator

from lablens.errors import SettingError
from lablens.fields.detection import Detection, box_from_center, register_detector
from lablens.fields.geometry import disc, inside, touches_edge

if TYPE_CHECKING:
    from lablens.fields.verifier import WbcVerifier

RBC_DIAMETER_UM = 7.5


def split_touching(mask: np.ndarray, min_distance_px: float) -> np.ndarray:
    """Label ``mask`` with touching round objects split by a watershed on the distance transform."""
    dist = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(
        dist, min_distance=max(1, round(min_distance_px)), labels=label(mask), exclude_border=False
    )
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=mask)


def _absorb_lobes(nuclei: list[dict], expand: float) -> list[dict]:
    """Merge a nuclear region into a larger one when its centre lies inside the larger one's cell box.

    A lobe that lies farther than ``merge_gap_um`` from the rest of its nucleus is still inside the cell's
    outline; this keeps one white cell from being counted twice. Each region's ``ids`` (its labels in the
    nuclear label image) travel with it.
    """
    kept: list[dict] = []
    for n in sorted(nuclei, key=lambda n: -n["area"]):
        cx, cy = (n["box"][0] + n["box"][2]) / 2, (n["box"][1] + n["box"][3]) / 2
        for k in kept:
            x0, y0, x1, y1 = k["box"]
            half = max(x1 - x0, y1 - y0) * expand / 2
            kx, ky = (x0 + x1) / 2, (y0 + y1) / 2
            if abs(cx - kx) <= half and abs(cy - ky) <= half:
                b = n["box"]
                k["box"] = [min(x0, b[0]), min(y0, b[1]), max(x1, b[2]), max(y1, b[3])]
                k["area"] += n["area"]
                k["ids"] = k["ids"] + n["ids"]
                break
        else:
            kept.append({"box": list(n["box"]), "area": n["area"], "ids": list(n["ids"])})
    return kept


def _blueness(rgb: np.ndarray) -> np.ndarray:
    """``B − R`` relative to the field's median, so a redder or bluer stain batch shifts nothing."""
    s = rgb[..., 2] - rgb[..., 0]
    return s - np.median(s)


@register_detector("smear")
class SmearDetector(BaseEstimator):
    """White cells, platelets and red cells on a stained peripheral blood smear field.

    Args:
        um_per_px: field scale in µm per pixel (BCCD ~0.075, CellaVision ~0.1).
        stain_threshold: ``B − R`` (0–255 units) above the field's median at which a pixel is nuclear stain.
        min_nucleus_um2: smallest blue region taken as a white-cell nucleus; smaller ones are platelets.
        max_nucleus_um2: a joined region larger than this is split into several nuclei by watershed.
        min_lobe_um2: smallest blue region that may be a nuclear lobe (lobes are joined before the size test).
        min_platelet_um2: smallest blue region kept as a platelet (dust and stain specks are smaller).
        platelet_threshold: ``B − R`` above the field median at which a pixel may belong to a platelet (paler than nuclei).
        platelet_box_um: smallest side of a platelet's box.
        merge_gap_um: nuclear lobes closer than this belong to one cell.
        cell_expand: white-cell box side = nucleus box side × this ...
        min_cell_um: ... and at least this (the smallest white cells, small lymphocytes, are ~8 µm).
        edge_min_um2: a nucleus touching the field edge is kept only when at least this much is visible.
        rbc_saturation: a pixel is red-cell foreground when its saturation (max − min channel) exceeds the
            field's 5th percentile (the background) by this much.
        find_rbc: also detect red cells (slower; a differential does not need them).
        verifier: path of a white-cell verifier fitted on this lab's annotated fields (``lablens
            fit-verifier``); when given, nucleus candidates are found at the verifier's more sensitive
            threshold and the verifier decides which are white cells and where each cell's box lies.
    """

    def __init__(
        self,
        um_per_px: float | None = 0.075,
        stain_threshold: float = 48.0,
        min_nucleus_um2: float = 20.0,
        max_nucleus_um2: float = 150.0,
        min_lobe_um2: float = 4.0,
        min_platelet_um2: float = 0.5,
        platelet_threshold: float = 33.0,
        platelet_box_um: float = 3.0,
        merge_gap_um: float = 1.5,
        cell_expand: float = 1.2,
        min_cell_um: float = 10.0,
        edge_min_um2: float = 15.0,
        rbc_saturation: float = 10.0,
        find_rbc: bool = True,
        verifier: str | None = None,
    ) -> None:
        self.um_per_px = um_per_px
        self.stain_threshold = stain_threshold
        self.min_nucleus_um2 = min_nucleus_um2
        self.max_nucleus_um2 = max_nucleus_um2
        self.min_platelet_um2 = min_platelet_um2
        self.min_lobe_um2 = min_lobe_um2
        self.platelet_threshold = platelet_threshold
        self.platelet_box_um = platelet_box_um
        self.merge_gap_um = merge_gap_um
        self.cell_expand = cell_expand
        self.min_cell_um = min_cell_um
        self.edge_min_um2 = edge_min_um2
        self.rbc_saturation = rbc_saturation
        self.find_rbc = find_rbc
        self.verifier = verifier

    def _verifier_model(self) -> WbcVerifier:
        from lablens.fields.verifier import load_verifier

        return load_verifier(self.verifier)  # cached by the file's path and mtime

    def scale(self) -> float:
        if not self.um_per_px or self.um_per_px <= 0:
            raise SettingError("the smear detector needs the field scale: give um_per_px (µm per pixel)")
        return float(self.um_per_px)

    def detect(self, image: np.ndarray) -> list[Detection]:
        rgb = np.asarray(image, dtype=np.float32)
        return self.white_cells_and_platelets(rgb) + (self.red_cells(rgb) if self.find_rbc else [])

    def stain_mask(self, rgb: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Nuclear-stain pixels (``B − R`` above threshold, opened to drop specks)."""
        t = self.stain_threshold if threshold is None else threshold
        mask = (_blueness(rgb) > t).astype(np.uint8)
        return cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0

    def nucleus_candidates(
        self, rgb: np.ndarray, stain_threshold: float | None = None
    ) -> tuple[np.ndarray, list[dict]]:
        """Nuclear regions with lobes joined and touching nuclei split, before any size test.

        Returns the nuclear label image and one dict per candidate nucleus: ``box`` (pixels), ``area``
        (pixels) and ``ids`` (its labels in the image; a segmented nucleus has several).
        """
        um = self.scale()
        px2 = um * um
        blue = self.stain_mask(rgb, stain_threshold)
        blobs = label(blue)
        big = np.zeros_like(blue)
        for r in regionprops(blobs):
            if r.area * px2 >= self.min_lobe_um2:
                big[blobs == r.label] = True
        # Join lobes: nuclei regions whose dilations (by half the gap) touch form one cell.
        joined = label(cv2.dilate(big.astype(np.uint8), disc(self.merge_gap_um / 2 / um)) > 0)
        cells = np.where(big, joined, 0)
        min_split_px = math.sqrt(self.max_nucleus_um2 / math.pi) / um  # the radius of the largest nucleus
        next_id = int(cells.max()) + 1
        for r in regionprops(cells):
            if r.area * px2 > self.max_nucleus_um2:  # several touching white cells: split them
                parts = split_touching(cells == r.label, min_split_px)
                for k in range(1, int(parts.max()) + 1):
                    cells[parts == k] = next_id
                    next_id += 1
        nuclei = []
        for r in regionprops(cells):
            y0, x0, y1, x1 = r.bbox
            nuclei.append({"box": [x0, y0, x1, y1], "area": int(r.area), "ids": [r.label]})
        return cells, _absorb_lobes(nuclei, self.cell_expand)

    def white_cells_and_platelets(self, rgb: np.ndarray) -> list[Detection]:
        if self.verifier is not None:
            white = self._verifier_model().detect(self, rgb)
            return white + self.platelets(rgb, white)
        um = self.scale()
        px2 = um * um
        h, w = rgb.shape[:2]
        out: list[Detection] = []
        for n in self.nucleus_candidates(rgb)[1]:
            x0, y0, x1, y1 = n["box"]
            area_um2 = n["area"] * px2
            edge = touches_edge(n["box"], (h, w))
            if area_um2 < self.min_nucleus_um2 or (edge and area_um2 < self.edge_min_um2):
                continue
            side = max(max(x1 - x0, y1 - y0) * self.cell_expand, self.min_cell_um / um)
            box = box_from_center((x0 + x1) / 2, (y0 + y1) / 2, side, w, h)
            # confidence: how far past the size threshold the nucleus is (tiny ones are the doubtful ones)
            score = float(min(1.0, area_um2 / (4 * self.min_nucleus_um2)))
            out.append(
                Detection(
                    "wbc",
                    box,
                    score=score,
                    area=int(n["area"]),
                    attrs={"edge": edge, "nucleus_um2": round(float(area_um2), 2)},
                )
            )
        return out + self.platelets(rgb, out)

    def platelets(self, rgb: np.ndarray, white_cells: list[Detection]) -> list[Detection]:
        """Small blue objects (singles or clumps) outside the white cells' boxes.

        Platelets stain paler than nuclei, so they get their own threshold; the box is widened to at least
        ``platelet_box_um`` because annotators box the whole platelet with its pale hyalomere.
        """
        um = self.scale()
        px2 = um * um
        h, w = rgb.shape[:2]
        mask = (_blueness(rgb) > self.platelet_threshold).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        out: list[Detection] = []
        for r in regionprops(label(mask > 0)):
            area_um2 = r.area * px2
            if not self.min_platelet_um2 <= area_um2 < self.min_nucleus_um2:
                continue
            cy, cx = r.centroid
            if any(inside(cx, cy, c.box) for c in white_cells):
                continue
            y0, x0, y1, x1 = r.bbox
            side = max(1.3 * max(x1 - x0, y1 - y0), self.platelet_box_um / um)
            out.append(
                Detection(
                    "platelet",
                    box_from_center(cx, cy, side, w, h),
                    score=float(min(1.0, area_um2 / (2 * self.min_platelet_um2))),
                    area=int(r.area),
                    attrs={"edge": touches_edge((x0, y0, x1, y1), (h, w))},
                )
            )
        return out

    def red_cells(self, rgb: np.ndarray) -> list[Detection]:
        um = self.scale()
        h, w = rgb.shape[:2]
        sat = rgb.max(axis=2) - rgb.min(axis=2)  # red cells are more saturated than the pale background
        red = (sat > np.percentile(sat, 5) + self.rbc_saturation).astype(np.uint8)
        red = cv2.morphologyEx(red, cv2.MORPH_OPEN, disc(0.4 / um)) > 0
        red = ndi.binary_fill_holes(red)
        radius_px = RBC_DIAMETER_UM / 2 / um
        parts = split_touching(red, 0.7 * radius_px)
        min_area = 0.25 * math.pi * radius_px**2
        out: list[Detection] = []
        for r in regionprops(parts):
            if r.area < min_area:
                continue
            y0, x0, y1, x1 = r.bbox
            out.append(
                Detection(
                    "rbc",
                    (x0, y0, x1, y1),
                    score=1.0,
                    area=int(r.area),
                    attrs={"edge": touches_edge((x0, y0, x1, y1), (h, w))},
                )
            )
        return out
