"""Point-spread functions for the degradation protocol, built deterministically from their parameters.

Three blur kinds, each parameterised so that a given blur *level* means the same PSF spread (standard
deviation of the kernel along one axis, in pixels) whatever the kind:

- ``defocus``: a uniform disc (geometric-optics defocus); a disc of radius R has per-axis sd R/2, so
  R = 2·sd;
- ``gaussian``: an isotropic Gaussian of sd ``sigma``;
- ``motion``: a uniform line segment of length L at an angle (stage drift during exposure); its sd along
  the line is L/√12, so L = √12·sd.

OpenCV draws the shapes; the kernels are rendered on a supersampled grid and area-averaged so that
sub-pixel radii and lengths change the kernel smoothly (levels stay strictly ordered).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from lablens.errors import SettingError

KINDS: tuple[str, ...] = ("defocus", "gaussian", "motion")
_SUPER = 8  # supersampling factor when rasterising discs and lines


def psf_size_parameter(kind: str, sd: float) -> float:
    """The kind's natural size (disc radius, Gaussian sigma, line length) for a per-axis sd in pixels."""
    if kind == "defocus":
        return 2.0 * sd
    if kind == "gaussian":
        return sd
    if kind == "motion":
        return math.sqrt(12.0) * sd
    raise SettingError(f"unknown blur kind {kind!r}; choose one of {', '.join(KINDS)}")


def psf_kernel(kind: str, sd: float, angle_deg: float = 0.0) -> np.ndarray:
    """A normalised float32 kernel (odd square side) of the given kind and per-axis sd in pixels.

    ``sd <= 0`` gives the identity kernel ``[[1]]``. ``angle_deg`` matters only for ``motion``.
    """
    if sd <= 0:
        return np.ones((1, 1), np.float32)
    size = psf_size_parameter(kind, sd)
    if kind == "gaussian":
        half = max(1, math.ceil(3.0 * size))
        g = cv2.getGaussianKernel(2 * half + 1, size, cv2.CV_64F)
        k = g @ g.T
    elif kind == "defocus":
        k = _rasterise_disc(size)
    else:
        k = _rasterise_line(size, angle_deg)
    k = k.astype(np.float64)
    return (k / k.sum()).astype(np.float32)


def _rasterise_disc(radius: float) -> np.ndarray:
    half = math.ceil(radius + 0.5)
    n = (2 * half + 1) * _SUPER
    c = (np.arange(n) + 0.5) / _SUPER - (half + 0.5)
    inside = (c[None, :] ** 2 + c[:, None] ** 2) <= radius**2
    fine = inside.astype(np.float64)
    if fine.sum() == 0:  # a disc smaller than a supersampled cell: the centre pixel
        fine[n // 2, n // 2] = 1.0
    return cv2.resize(fine, (2 * half + 1, 2 * half + 1), interpolation=cv2.INTER_AREA)


def _rasterise_line(length: float, angle_deg: float) -> np.ndarray:
    half = math.ceil(length / 2 + 1)
    side = 2 * half + 1
    fine = np.zeros((side * _SUPER, side * _SUPER), np.float64)
    centre = side * _SUPER / 2.0
    a = math.radians(angle_deg)
    dx, dy = math.cos(a) * length * _SUPER / 2, -math.sin(a) * length * _SUPER / 2
    shift = 4  # cv2.line takes fixed-point coordinates with this many fractional bits
    p0 = (round((centre - dx) * (1 << shift)), round((centre - dy) * (1 << shift)))
    p1 = (round((centre + dx) * (1 << shift)), round((centre + dy) * (1 << shift)))
    cv2.line(fine, p0, p1, 1.0, thickness=max(1, _SUPER // 2), lineType=cv2.LINE_AA, shift=shift)
    return cv2.resize(fine, (side, side), interpolation=cv2.INTER_AREA)


def kernel_sd(kernel: np.ndarray) -> tuple[float, float]:
    """Per-axis standard deviations (x, y) of a kernel, in pixels (for tests and records)."""
    k = kernel.astype(np.float64) / kernel.sum()
    ys, xs = np.mgrid[: k.shape[0], : k.shape[1]]
    mx, my = (k * xs).sum(), (k * ys).sum()
    return math.sqrt((k * (xs - mx) ** 2).sum()), math.sqrt((k * (ys - my) ** 2).sum())
