"""Fluorescence (IIF) nucleus detector for HEp-2 fields, with mitotic cells marked.

The signal channel (FITC green by default) is stretched between robust percentiles, so dim negative wells are
segmented like bright ones, then smoothed at about 1 µm so that a speckled, dotted or nucleolar nucleus reads
as one blob. A pixel is foreground when it is above the local threshold (scikit-image ``threshold_local`` over a
window of a few cells) *and* above a fraction of the field's Otsu level (so that the dark gaps between
cells are not segmented as "locally bright"). Holes are filled, specks removed, and touching nuclei split by a
watershed on the distance transform.

For cytoplasmic patterns (AMA, fibrillar) the stained object is the cell body rather than the nucleus; the
detector then returns cells, which is what a per-cell classifier needs.

Mitotic cells: condensed chromatin makes a metaphase plate or prophase nucleus smaller and brighter than the
interphase nuclei of the same field, so a nucleus whose area is below ``mitotic_area`` × the field median and
whose mean signal is above ``mitotic_bright`` × the field median is marked ``mitotic`` (a candidate for the
reader to confirm, as in a manual IIF read).

Burned-in overlays (scale bars, text) are excluded with ``ignore_regions``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_local, threshold_otsu
from skimage.measure import regionprops
from skimage.segmentation import watershed
from sklearn.base import BaseEstimator

from lablens.errors import SettingError
from lablens.fields.brightfield import split_touching
from lablens.fields.detection import Detection, register_detector
from lablens.fields.geometry import touches_edge

CHANNELS = {"red": 0, "green": 1, "blue": 2}


@register_detector("nuclei")
class NucleiDetector(BaseEstimator):
    """Nuclei (or stained cells) on an immunofluorescence field.

    Args:
        um_per_px: field scale in µm per pixel.
        channel: ``green`` | ``red`` | ``blue`` | ``grey`` (mean of the three).
        nucleus_um: typical nucleus diameter; sets the smoothing, the local window and the watershed spacing.
        min_nucleus_um2: smallest object kept.
        otsu_fraction: foreground must also exceed this fraction of the field's Otsu threshold.
        mitotic_area: a mitotic candidate is smaller than this × the median nucleus area ...
        mitotic_bright: ... and brighter than this × the median nucleus mean signal.
        ignore_regions: ``(x0, y0, x1, y1)`` pixel boxes to leave out (scale bars, labels).
    """

    def __init__(
        self,
        um_per_px: float | None = 0.093,
        channel: str = "green",
        nucleus_um: float = 12.0,
        min_nucleus_um2: float = 15.0,
        otsu_fraction: float = 0.5,
        mitotic_area: float = 0.75,
        mitotic_bright: float = 1.3,
        ignore_regions: Sequence[Sequence[int]] = (),
    ) -> None:
        self.um_per_px = um_per_px
        self.channel = channel
        self.nucleus_um = nucleus_um
        self.min_nucleus_um2 = min_nucleus_um2
        self.otsu_fraction = otsu_fraction
        self.mitotic_area = mitotic_area
        self.mitotic_bright = mitotic_bright
        self.ignore_regions = ignore_regions

    def signal(self, image: np.ndarray) -> np.ndarray:
        """The signal channel as float in [0, 1] after a robust stretch (ignored regions set to background)."""
        img = np.asarray(image, dtype=np.float32)
        if self.channel == "grey":
            g = img.mean(axis=2)
        elif self.channel in CHANNELS:
            g = img[..., CHANNELS[self.channel]]
        else:
            raise SettingError(f"unknown channel {self.channel!r}; choose green, red, blue or grey")
        keep = np.ones(g.shape, dtype=bool)
        for x0, y0, x1, y1 in self.ignore_regions:
            keep[max(0, int(y0)) : max(0, int(y1)), max(0, int(x0)) : max(0, int(x1))] = False
        lo, hi = np.percentile(g[keep], [0.5, 99.8]) if keep.any() else (0.0, 1.0)
        out = np.clip((g - lo) / max(hi - lo, 1e-6), 0, 1)
        out[~keep] = 0.0
        return out

    def detect(self, image: np.ndarray) -> list[Detection]:
        if not self.um_per_px or self.um_per_px <= 0:
            raise SettingError("the nuclei detector needs the field scale: give um_per_px (µm per pixel)")
        um = float(self.um_per_px)
        raw = self.signal(image)
        smooth = cv2.GaussianBlur(raw, (0, 0), sigmaX=max(0.5, 1.0 / um))
        diam_px = self.nucleus_um / um
        block = int(3 * diam_px) | 1
        local = threshold_local(smooth, block_size=block, method="gaussian")
        floor = self.otsu_fraction * threshold_otsu(smooth)
        mask = (smooth > local) & (smooth > floor)
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _disc(0.15 * diam_px)) > 0
        mask = ndi.binary_fill_holes(mask)
        cells = split_touching(mask, 0.35 * diam_px)
        min_px = self.min_nucleus_um2 / (um * um)
        regions = [r for r in regionprops(cells, intensity_image=raw) if r.area >= min_px]
        if not regions:
            return []
        med_area = float(np.median([r.area for r in regions]))
        med_int = float(np.median([r.intensity_mean for r in regions]))
        h, w = raw.shape
        out: list[Detection] = []
        for r in regions:
            y0, x0, y1, x1 = r.bbox
            mitotic = bool(
                r.area < self.mitotic_area * med_area and r.intensity_mean > self.mitotic_bright * med_int
            )
            out.append(
                Detection(
                    "nucleus",
                    (x0, y0, x1, y1),
                    score=float(min(1.0, r.area / (2 * min_px))),
                    area=int(r.area),
                    attrs={
                        "mitotic": mitotic,
                        "edge": touches_edge((x0, y0, x1, y1), (h, w)),
                        "mean_signal": round(float(r.intensity_mean), 4),
                        "solidity": round(float(r.solidity), 3),
                    },
                )
            )
        return out


@register_detector("cells")
class CellDetector(BaseEstimator):
    """Whole cells on an IIF field whose stain is in the cytoplasm (nuclei dark): AC-15 … AC-23 patterns.

    The signal is smoothed at about 1 µm (granules and fibres read as one body) and thresholded like the nuclei
    detector, over a window of a few cells. The dark nucleus of each cell is a hole in that mask: holes of about a
    nucleus's size, wrapped in cytoplasm and not as dark as bare slide, seed the cells; where no accepted nucleus
    lies within about a third of a cell (a rounded mitotic cell, a nucleus open towards a gap), a peak of the body's
    distance transform seeds one. Each body pixel goes to its nearest seed.

    Args:
        um_per_px: field scale in µm per pixel.
        channel: ``green`` | ``red`` | ``blue`` | ``grey``.
        cell_um: typical cell diameter (window size, peak spacing).
        nucleus_um: typical nucleus diameter (which holes are nuclei).
        min_cell_um2: smallest cell kept.
        otsu_fraction: foreground must also exceed this fraction of the field's Otsu threshold.
        ignore_regions: ``(x0, y0, x1, y1)`` pixel boxes to leave out.
    """

    def __init__(
        self,
        um_per_px: float | None = 0.093,
        channel: str = "green",
        cell_um: float = 20.0,
        nucleus_um: float = 10.0,
        min_cell_um2: float = 80.0,
        otsu_fraction: float = 0.5,
        ignore_regions: Sequence[Sequence[int]] = (),
    ) -> None:
        self.um_per_px = um_per_px
        self.channel = channel
        self.cell_um = cell_um
        self.nucleus_um = nucleus_um
        self.min_cell_um2 = min_cell_um2
        self.otsu_fraction = otsu_fraction
        self.ignore_regions = ignore_regions

    def segment(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(cell labels, nucleus-hole labels, stretched signal)`` of a field."""
        if not self.um_per_px or self.um_per_px <= 0:
            raise SettingError("the cell detector needs the field scale: give um_per_px (µm per pixel)")
        um = float(self.um_per_px)
        raw = NucleiDetector(um, self.channel, ignore_regions=self.ignore_regions).signal(image)
        smooth = cv2.GaussianBlur(raw, (0, 0), sigmaX=max(0.5, 1.0 / um))
        block = int(3 * self.cell_um / um) | 1
        local = threshold_local(smooth, block_size=block, method="gaussian")
        mask = (smooth > local) & (smooth > self.otsu_fraction * threshold_otsu(smooth))
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, _disc(1.0 / um)) > 0
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _disc(0.8 / um)) > 0
        nucleus_d = self.nucleus_um / um
        holes = _dark_nuclei(smooth, mask, nucleus_d, self.otsu_fraction, ring_px=max(2, round(1.5 / um)))
        filled = ndi.binary_fill_holes(mask | (holes > 0))
        markers, _ = ndi.label(holes > 0)
        # a cell whose nucleus was not accepted (open towards a gap, too dim, rounded up) still has a thick body: a
        # peak of the body's distance transform far from every accepted nucleus seeds it
        cell_px = self.cell_um / um
        far = ndi.distance_transform_edt(markers == 0) > 0.35 * cell_px
        peaks = peak_local_max(
            np.where(far, ndi.distance_transform_edt(filled), 0),
            min_distance=max(1, round(0.35 * cell_px)),
            threshold_abs=0.15 * cell_px,  # a body at least 0.3 cells thick there
        )
        markers[tuple(peaks.T)] = int(markers.max()) + 1 + np.arange(len(peaks))
        # each body pixel goes to the nearest seed (its cell's nucleus) through the body: touching cells part
        # half-way between their nuclei, the rule a cytologist's eye follows on a monolayer
        to_seed = ndi.distance_transform_edt(markers == 0)
        cells = watershed(to_seed, markers, mask=filled)
        return cells, holes, raw

    def detect(self, image: np.ndarray) -> list[Detection]:
        cells, _, raw = self.segment(image)
        um = float(self.um_per_px)  # type: ignore[arg-type]
        min_px = self.min_cell_um2 / (um * um)
        h, w = raw.shape
        out: list[Detection] = []
        for r in regionprops(cells, intensity_image=raw):
            if r.area < min_px:
                continue
            y0, x0, y1, x1 = r.bbox
            out.append(
                Detection(
                    "cell",
                    (x0, y0, x1, y1),
                    score=float(min(1.0, r.area / (2 * min_px))),
                    area=int(r.area),
                    attrs={
                        "edge": touches_edge((x0, y0, x1, y1), (h, w)),
                        "mean_signal": round(float(r.intensity_mean), 4),
                        "solidity": round(float(r.solidity), 3),
                    },
                )
            )
        return out


def _dark_nuclei(
    smooth: np.ndarray, mask: np.ndarray, nucleus_d: float, otsu_fraction: float, ring_px: int
) -> np.ndarray:
    """Labels of the dark nuclei inside bright cytoplasm (0 elsewhere).

    The black top-hat (closing minus signal) at nucleus size finds them even where a cell's ring of cytoplasm is
    open towards a neighbour, where hole filling fails; an opening at a fifth of a nucleus cuts the thin necks that
    join a nucleus to a gap beside its cell. A candidate is accepted when it is nucleus-sized and solid, keeps some
    signal (autofluorescence, out-of-focus cytoplasm above it; a gap between cells is bare slide, its darkest
    pixels at the background level), and is mostly wrapped in cytoplasm.
    """
    closed = cv2.morphologyEx(smooth, cv2.MORPH_CLOSE, _disc(0.75 * nucleus_d))
    tophat = closed - smooth
    dark = tophat > max(threshold_otsu(tophat), 0.05)
    dark = cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_OPEN, _disc(0.2 * nucleus_d)) > 0
    dark &= closed > otsu_fraction * threshold_otsu(smooth)
    nucleus_px = np.pi * (nucleus_d / 2) ** 2
    # a hole of the cytoplasm mask no bigger than a large nucleus is a candidate too, however wide (a nucleus wider
    # than the top-hat's element is only a ring in the top-hat)
    enclosed = ndi.binary_fill_holes(mask) & ~mask
    holes, _ = ndi.label(enclosed)
    sizes = ndi.sum_labels(enclosed, holes, np.arange(holes.max() + 1))
    dark |= (sizes <= 4.0 * nucleus_px)[holes] & enclosed
    candidates, n = ndi.label(dark)
    bare = ~mask & ~dark
    background = float(np.median(smooth[bare])) if bare.any() else 0.0
    floor = background + 0.03 * (float(np.median(smooth[mask])) - background) if mask.any() else background
    keep = np.zeros(n + 1, bool)
    for r in regionprops(candidates, intensity_image=smooth):
        if not 0.15 * nucleus_px <= r.area <= 4.0 * nucleus_px or r.solidity < 0.7:
            continue  # not nucleus-sized, or the ragged shape of a gap between cells
        if np.percentile(r.image_intensity[r.image], 10) <= floor:
            continue  # bare slide
        y0, x0, y1, x1 = r.bbox
        y0, x0 = max(0, y0 - ring_px), max(0, x0 - ring_px)
        win = candidates[y0 : y1 + ring_px, x0 : x1 + ring_px] == r.label
        ring = (cv2.dilate(win.astype(np.uint8), _disc(ring_px)) > 0) & ~win
        keep[r.label] = mask[y0 : y1 + ring_px, x0 : x1 + ring_px][ring].mean() >= 0.5  # wrapped in cytoplasm
    return np.where(keep[candidates], candidates, 0)


def _disc(radius_px: float) -> np.ndarray:
    r = max(1, math.floor(radius_px))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
