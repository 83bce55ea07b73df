"""Cheap per-image quality measures, each registered by name.

All take an ``H×W×3`` uint8 RGB image and return one float. Sharpness measures work on the grey image in
[0, 1] (so values do not depend on bit depth) and are larger for sharper images:

- ``laplacian_var``: variance of the Laplacian (Pech-Pacheco et al. 2000);
- ``tenengrad``: mean squared Sobel gradient magnitude (Tenenbaum 1970);
- ``brenner``: mean squared difference of pixels two apart, both axes (Brenner et al. 1976);
- ``spectrum_slope``: slope of the radially averaged log power spectrum against log frequency (more
  negative when blur removes high frequencies);

and exposure and noise:

- ``saturated``: fraction of pixels with any channel at 250 or more (clipped highlights);
- ``underexposed``: fraction of pixels whose luminance is 5 or less (note: the dark background of a
  fluorescence image counts too; compare within a modality);
- ``noise``: the sd of Gaussian noise in [0, 1] units, by scikit-image's wavelet estimator (Donoho).

Sharpness values depend on content and on image size, so compare them at one crop size within one
modality; the learned :mod:`lablens.quality.model` turns them into a blur level.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
from skimage.filters import window
from skimage.restoration import estimate_sigma

from lablens.registry import Registry

Measure = Callable[[np.ndarray], float]
MEASURES = Registry("quality measure")


def register_measure(name: str) -> Callable[[Measure], Measure]:
    """Decorator registering a measure (``H×W×3`` uint8 → float) under ``name``."""

    def deco(fn: Measure) -> Measure:
        return MEASURES.register(name, value=fn, summary=(fn.__doc__ or "").strip().split("\n")[0])

    return deco


def list_measures() -> list[str]:
    """The measures in the order they were registered (the column order of :func:`measure_batch`)."""
    return MEASURES.names(sort=False)


def _grey(img: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    return g.astype(np.float32) / 255.0


@register_measure("laplacian_var")
def laplacian_var(img: np.ndarray) -> float:
    return float(cv2.Laplacian(_grey(img), cv2.CV_32F, ksize=3).var())


@register_measure("tenengrad")
def tenengrad(img: np.ndarray) -> float:
    g = _grey(img)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.mean(gx * gx + gy * gy))


@register_measure("brenner")
def brenner(img: np.ndarray) -> float:
    g = _grey(img)
    dx = g[:, 2:] - g[:, :-2]
    dy = g[2:, :] - g[:-2, :]
    return float((np.mean(dx * dx) + np.mean(dy * dy)) / 2.0)


@register_measure("spectrum_slope")
def spectrum_slope(img: np.ndarray) -> float:
    # No library offers the radial power-spectrum slope; it is a windowed FFT, a radial mean and a line fit.
    g = _grey(img).astype(np.float64)
    g = (g - g.mean()) * window("hann", g.shape)
    power = np.abs(np.fft.fftshift(np.fft.fft2(g))) ** 2
    h, w = g.shape
    fy = (np.arange(h) - h // 2) / h
    fx = (np.arange(w) - w // 2) / w
    radius = np.hypot(fy[:, None], fx[None, :])
    bins = np.linspace(0.02, 0.5, 25)
    idx = np.digitize(radius.ravel(), bins)
    flat = power.ravel()
    freqs, means = [], []
    for b in range(1, len(bins)):
        sel = idx == b
        if sel.any():
            freqs.append((bins[b - 1] + bins[b]) / 2)
            means.append(flat[sel].mean())
    means_arr = np.maximum(np.asarray(means), 1e-20)
    slope = np.polyfit(np.log(freqs), np.log(means_arr), 1)[0]
    return float(slope)


@register_measure("saturated")
def saturated(img: np.ndarray) -> float:
    rgb = img if img.ndim == 3 else img[..., None]
    return float(np.mean(rgb.max(axis=-1) >= 250))


@register_measure("underexposed")
def underexposed(img: np.ndarray) -> float:
    lum = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    return float(np.mean(lum <= 5))


@register_measure("noise")
def noise(img: np.ndarray) -> float:
    g = _grey(img)
    if float(g.max() - g.min()) == 0.0:  # a flat image: no wavelet detail at all (the estimator gives NaN)
        return 0.0
    value = float(estimate_sigma(g, channel_axis=None))
    return value if np.isfinite(value) else 0.0


def measure_image(img: np.ndarray, names: Sequence[str] | None = None) -> dict[str, float]:
    """Every (or the named) registered measure of one image."""
    chosen = list(names) if names else list_measures()
    return {n: MEASURES.value(n)(img) for n in chosen}  # an unknown name: the closest ones are suggested


def measure_batch(
    images: np.ndarray | Sequence[np.ndarray], names: Sequence[str] | None = None
) -> np.ndarray:
    """``N×M`` float64 array of the measures (columns in the order of ``names`` or registration)."""
    chosen = list(names) if names else list_measures()
    rows = [list(measure_image(im, chosen).values()) for im in images]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(chosen))
