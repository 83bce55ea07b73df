"""Handcrafted descriptors of a cell crop, as in the classical microscopy literature (SCLEROCAP, Acevedo).

Each is a registered extractor computed on the same crop the CNN sees, inside the cell mask where that
helps. The maths comes from OpenCV (Hu moments), scikit-image (GLCM/Haralick, LBP, region properties),
mahotas (Zernike moments) and SciPy (moments of intensity); this module only chooses what to measure.
All outputs are invariant to rotation of the crop (cells have no orientation): Haralick statistics are
averaged over four angles, LBP is the rotation-invariant uniform variant, and Hu/Zernike are invariant.
"""

from __future__ import annotations

import cv2
import mahotas
import numpy as np
from scipy import ndimage
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
from skimage.filters import threshold_otsu
from skimage.measure import label, regionprops

from lablens.errors import ParamError
from lablens.features.base import PerCellExtractor
from lablens.features.cell_view import CellView
from lablens.features.registry import register_extractor


def _as_list(value: object) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _box(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The bounding box of ``mask`` grown by ``margin`` pixels (clipped to the image): a neighbourhood operator
    of that reach gives the same values inside the mask on the box as on the whole crop, for less work."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (
        slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, h)),
        slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, w)),
    )


def _log_moments(hu: np.ndarray) -> np.ndarray:
    """Hu moments span many decades; the usual signed log scale makes them comparable."""
    hu = hu.ravel()
    return -np.sign(hu) * np.log10(np.abs(hu) + 1e-30)


@register_extractor("hu")
class HuMoments(PerCellExtractor):
    """The 7 Hu invariant moments of the cell mask (shape) and of the grey levels inside it (stain)."""

    def feature_names(self) -> list[str]:
        return [f"hu_{src}_{i + 1}" for src in ("mask", "grey") for i in range(7)]

    def describe(self, view: CellView) -> np.ndarray:
        mask = view.mask.astype(np.uint8)
        density = view.grey if view.fluorescent else 255 - view.grey  # stain density is high inside cells
        shape = cv2.HuMoments(cv2.moments(mask, binaryImage=True))
        stain = cv2.HuMoments(cv2.moments((density * mask).astype(np.float32)))
        return np.concatenate([_log_moments(shape), _log_moments(stain)])


@register_extractor("zernike")
class ZernikeMoments(PerCellExtractor):
    """Magnitudes of the Zernike moments (up to ``degree``) of the masked grey image, centred on the cell."""

    def __init__(self, degree: int = 8) -> None:
        self.degree = degree

    def feature_names(self) -> list[str]:
        count = len(mahotas.features.zernike_moments(np.ones((8, 8)), 4, degree=int(self.degree)))
        return [f"zernike_{i}" for i in range(count)]

    def describe(self, view: CellView) -> np.ndarray:
        density = (view.grey if view.fluorescent else 255 - view.grey).astype(np.float64) * view.mask
        if density.sum() <= 0:
            density = view.mask.astype(np.float64)
        cm = ndimage.center_of_mass(density)
        radius = max(2, min(density.shape) // 2)
        return mahotas.features.zernike_moments(density, radius, degree=int(self.degree), cm=cm)


_GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation", "entropy")


@register_extractor("haralick")
class Haralick(PerCellExtractor):
    """Haralick/GLCM texture of the cell: each property's mean and range over 4 angles, per distance.

    Grey levels are quantised to ``levels`` inside the mask; pixels outside it are excluded by giving them
    a level of their own and dropping that level's row and column from the co-occurrence matrix.
    """

    def __init__(self, distances: list[int] | int = (1, 2, 4), levels: int = 32) -> None:
        self.distances = distances
        self.levels = levels

    def feature_names(self) -> list[str]:
        return [
            f"glcm_{p}_d{d}_{stat}"
            for d in _as_list(self.distances)
            for p in _GLCM_PROPS
            for stat in ("mean", "range")
        ]

    def describe(self, view: CellView) -> np.ndarray:
        levels = int(self.levels)
        distances = [int(d) for d in _as_list(self.distances)]
        q = 1 + (view.grey.astype(np.int32) * (levels - 1)) // 256  # 1 … levels-1 inside the mask
        mask = view.mask if view.mask.sum() >= 16 else np.ones_like(view.mask)
        box = _box(mask, 0)  # pixels outside the mask only ever pair with the dropped level 0
        q = np.where(mask, q, 0).astype(np.uint8)[box]
        angles = [0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
        glcm = graycomatrix(q, distances, angles, levels=levels, symmetric=True, normed=False)
        glcm = glcm[1:, 1:].astype(np.float64)
        totals = glcm.sum(axis=(0, 1), keepdims=True)
        glcm = np.where(totals > 0, glcm / np.maximum(totals, 1e-12), 1.0 / glcm[:, :, :1, :1].size)
        # distances × properties × angles, each property computed for every distance and angle at once
        values = np.nan_to_num(np.stack([graycoprops(glcm, prop) for prop in _GLCM_PROPS], axis=1), nan=0.0)
        return np.stack([values.mean(axis=2), np.ptp(values, axis=2)], axis=2).ravel()


@register_extractor("lbp")
class LocalBinaryPatterns(PerCellExtractor):
    """Histograms of rotation-invariant uniform local binary patterns inside the mask, at two scales."""

    def __init__(self, points: list[int] | int = (8, 16), radii: list[float] | float = (1, 2)) -> None:
        self.points = points
        self.radii = radii

    def _scales(self) -> list[tuple[int, float]]:
        points, radii = _as_list(self.points), _as_list(self.radii)
        if len(points) != len(radii):
            raise ParamError("lbp: give as many radii as point counts")
        return [(int(p), float(r)) for p, r in zip(points, radii, strict=True)]

    def feature_names(self) -> list[str]:
        return [f"lbp_p{p}_r{r:g}_{b}" for p, r in self._scales() for b in range(p + 2)]

    def describe(self, view: CellView) -> np.ndarray:
        mask = view.mask if view.mask.sum() >= 16 else np.ones_like(view.mask)
        scales = self._scales()
        reach = int(np.ceil(max(r for _, r in scales))) + 1  # bilinear sampling at radius r reads this far
        box = _box(mask, reach)
        grey, mask = view.grey[box], mask[box]
        out = []
        for p, r in scales:
            codes = local_binary_pattern(grey, p, r, method="uniform")[mask]
            hist = np.bincount(codes.astype(np.int64), minlength=p + 2)[: p + 2].astype(np.float64)
            out.append(hist / max(hist.sum(), 1.0))
        return np.concatenate(out)


_CHANNELS = ("red", "green", "blue", "hue_cos", "hue_sin", "saturation", "value")
_STATS = ("mean", "sd", "skew", "kurtosis", "p10", "p50", "p90")


@register_extractor("colour")
class ColourStatistics(PerCellExtractor):
    """Intensity and colour statistics per channel (RGB, hue as a circle, saturation, value) inside the mask,
    plus the background's mean RGB and the cell-to-background contrast."""

    def feature_names(self) -> list[str]:
        inside = [f"colour_{c}_{s}" for c in _CHANNELS for s in _STATS]
        return [*inside, "bg_red", "bg_green", "bg_blue", "cell_bg_contrast"]

    def describe(self, view: CellView) -> np.ndarray:
        mask = view.mask
        rgb, hsv = view.rgb[mask].astype(np.float64), view.hsv[mask].astype(np.float64)  # pixels × 3, inside
        hue = hsv[:, 0] * (2 * np.pi / 180.0)
        values = np.stack([*(rgb.T / 255.0), np.cos(hue), np.sin(hue), hsv[:, 1] / 255.0, hsv[:, 2] / 255.0])
        return np.asarray([*_moments_and_percentiles(values).ravel(), *_background(view, mask)])


def _moments_and_percentiles(values: np.ndarray) -> np.ndarray:
    """Per row: mean, sd, skewness, excess kurtosis (population forms, as ``scipy.stats`` gives them by default;
    0 for a constant row) and the 10th, 50th, 90th percentiles — one vectorised pass for all channels."""
    mean = values.mean(axis=1)
    centred = values - mean[:, None]
    m2 = np.mean(centred**2, axis=1)
    m3 = np.mean(centred**3, axis=1)
    m4 = np.mean(centred**4, axis=1)
    sd = np.sqrt(m2)
    flat = sd < 1e-9
    safe = np.where(flat, 1.0, m2)
    skew = np.where(flat, 0.0, m3 / safe**1.5)
    kurt = np.where(flat, 0.0, m4 / safe**2 - 3.0)
    pct = np.percentile(values, [10, 50, 90], axis=1)
    return np.column_stack([mean, sd, skew, kurt, *pct])


def _background(view: CellView, mask: np.ndarray) -> list[float]:
    """The background's mean RGB and the cell-to-background contrast of grey levels."""
    background = ~mask
    bg = view.rgb[background].mean(0) / 255.0 if background.any() else np.zeros(3)
    grey = view.grey / 255.0
    contrast = grey[mask].mean() - (grey[background].mean() if background.any() else 0.0)
    return [*bg, contrast]


_REGION = ("area", "perimeter", "circularity", "eccentricity", "solidity", "extent", "axis_ratio", "euler")


def _region_stats(mask: np.ndarray, image_area: float) -> list[float]:
    props = regionprops(mask.astype(np.uint8))
    if not props:
        return [0.0] * len(_REGION)
    p = props[0]
    area = float(p.area)
    perimeter = float(p.perimeter)
    return [
        area / image_area,
        perimeter / np.sqrt(image_area),
        4 * np.pi * area / max(perimeter**2, 1e-9),
        float(p.eccentricity),
        float(p.solidity),
        float(p.extent),
        float(p.axis_minor_length / max(p.axis_major_length, 1e-9)),
        float(p.euler_number),
    ]


@register_extractor("morphology")
class Morphology(PerCellExtractor):
    """Shape of the cell and of its densest part (the nucleus in a stained smear, the brightest compartment in
    fluorescence): area, perimeter, circularity, eccentricity, solidity, extent, axis ratio, Euler number,
    plus the dense part's share of the cell and its number of pieces (lobes)."""

    def feature_names(self) -> list[str]:
        return [
            *(f"cell_{r}" for r in _REGION),
            *(f"core_{r}" for r in _REGION),
            "core_fraction",
            "core_pieces",
        ]

    def describe(self, view: CellView) -> np.ndarray:
        image_area = float(view.mask.size)
        box = _box(view.mask, 1)  # every measure below is translation-invariant and lives inside the mask
        mask = view.mask[box]
        density = (view.grey if view.fluorescent else 255 - view.grey)[box]
        inside = density[mask]
        if inside.size >= 16 and np.ptp(inside) > 0:
            core = mask & (density > threshold_otsu(inside))
            core = ndimage.binary_opening(core, iterations=1)
        else:
            core = mask
        pieces = label(core)
        n_pieces = int(pieces.max())
        sizes = np.bincount(pieces.ravel())[1:] if n_pieces else np.zeros(0)
        lobes = int((sizes >= 0.05 * max(sizes.max(initial=0), 1)).sum())
        cell_area = max(float(mask.sum()), 1.0)
        return np.asarray(
            [
                *_region_stats(mask, image_area),
                *_region_stats(core, image_area),
                core.sum() / cell_area,
                lobes,
            ]
        )
