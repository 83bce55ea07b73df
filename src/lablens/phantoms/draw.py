"""Deterministic drawing primitives for synthetic microscopy phantoms.

Everything here is modality-neutral: soft (anti-aliased) masks, shape unions, granule and texture
fields, Beer-Lambert and alpha compositing, optics and sensor degradations. Modality generators
(``blood_cells`` and later fluorescence or capillaroscopy phantoms) sample a plain dict of parameters
with a NumPy ``Generator`` and then call these functions, which never draw random numbers themselves.
Functions that need a random texture take an explicit integer ``seed`` that the caller sampled, so a
parameter dict replays to the same pixels.

Conventions:
    * masks and scalar fields are ``float32`` arrays of shape ``(H, W)``, masks in ``[0, 1]``;
    * colour layers and images are ``float32`` arrays of shape ``(H, W, 3)`` (RGB, ``[0, 1]`` for
      intensities, optical density for absorbance layers);
    * points are ``(x, y)`` in pixels with pixel centres at integer coordinates, angles in radians;
    * ``softness`` is the width in pixels of the anti-aliased edge ramp.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Shape = tuple[int, int]
ArrayLike = np.ndarray | Sequence[float]

__all__ = [
    "Frame",
    "absorb",
    "alpha_over",
    "capsule_chain",
    "colour_layer",
    "defocus",
    "granule_field",
    "lobed_shape",
    "optical_density",
    "pallor_discs",
    "polar_blob",
    "rotate_hue",
    "sensor_noise",
    "smooth_noise",
    "subtract",
    "to_uint8",
    "total_blur",
    "union",
]


# --------------------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------------------


def _window(
    shape: Shape, x0: float, y0: float, x1: float, y1: float
) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    """Clip the box ``[x0, x1] x [y0, y1]`` to the image; return slices and coordinate grids."""
    h, w = shape
    c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, w)
    r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, h)
    if c0 >= c1 or r0 >= r1:
        return None
    xx = np.arange(c0, c1, dtype=np.float32)[None, :]
    yy = np.arange(r0, r1, dtype=np.float32)[:, None]
    return slice(r0, r1), slice(c0, c1), xx, yy


def _ramp(signed_distance: np.ndarray, softness: float) -> np.ndarray:
    """Anti-aliased inside-ness from a signed distance (negative inside)."""
    s = max(float(softness), 1e-3)
    return np.clip(0.5 - signed_distance / s, 0.0, 1.0).astype(np.float32)


def _harmonic_array(harmonics: ArrayLike | None) -> np.ndarray:
    if harmonics is None:
        return np.zeros((0, 3), np.float32)
    arr = np.asarray(harmonics, np.float32).reshape(-1, 3)
    return arr


class Frame:
    """Maps µm field coordinates (origin at the image centre) to pixels for one output size.

    Generators sample geometry in µm; drawing through a frame renders it at any output size.
    """

    def __init__(self, size: int, field_um: float) -> None:
        self.size = size
        self.ppu = size / field_um
        self.centre = (size - 1) / 2.0

    def xy(self, p: ArrayLike) -> np.ndarray:
        return np.asarray(p, float) * self.ppu + self.centre


# --------------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------------


def polar_blob(
    shape: Shape,
    center: ArrayLike,
    radius: float,
    *,
    aspect: float = 1.0,
    angle: float = 0.0,
    harmonics: ArrayLike | None = None,
    softness: float = 1.0,
) -> np.ndarray:
    """Soft mask of an ellipse whose radius is perturbed by Fourier harmonics.

    The outline in the ellipse's own frame is ``r(t) = radius * (1 + sum_k a_k cos(k t + p_k))``,
    which gives round cells (no harmonics), wobbly blobs (small ``k`` = 2..6 terms), kidney shapes
    (a strong ``k`` = 1 plus ``k`` = 2) and so on.

    Args:
        shape: ``(H, W)`` of the output.
        center: ``(x, y)`` in pixels.
        radius: radius along the ellipse's major axis, pixels.
        aspect: minor/major axis ratio (``<= 1`` squashes along the rotated y axis).
        angle: rotation of the major axis, radians.
        harmonics: rows of ``(k, amplitude, phase)``.
        softness: edge ramp width in pixels.

    Returns:
        ``float32`` mask of ``shape`` in ``[0, 1]``.
    """
    out = np.zeros(shape, np.float32)
    harm = _harmonic_array(harmonics)
    cx, cy = float(center[0]), float(center[1])
    reach = radius * (1.0 + float(np.abs(harm[:, 1]).sum())) + 2.0 * softness + 1.0
    win = _window(shape, cx - reach, cy - reach, cx + reach, cy + reach)
    if win is None or radius <= 0:
        return out
    rs, cs, xx, yy = win
    dx, dy = xx - cx, yy - cy
    ca, sa = np.cos(angle), np.sin(angle)
    u = dx * ca + dy * sa
    v = (-dx * sa + dy * ca) / max(aspect, 1e-3)
    rho = np.sqrt(u * u + v * v)
    r = np.full_like(rho, radius)
    if len(harm):
        theta = np.arctan2(v, u)
        mod = np.ones_like(rho)
        for k, amp, phase in harm:
            mod += amp * np.cos(k * theta + phase)
        r = r * mod
    out[rs, cs] = _ramp(rho - r, softness)
    return out


def capsule_chain(shape: Shape, points: ArrayLike, radii: ArrayLike, *, softness: float = 1.0) -> np.ndarray:
    """Soft mask of a polyline swept by a disc whose radius varies linearly along each segment.

    Useful for band / C / S / horseshoe nuclei (thick chain), thin chromatin strands between lobes,
    hyphae, capillary loops, fibres.

    Args:
        shape: ``(H, W)`` of the output.
        points: ``(N, 2)`` array of ``(x, y)`` pixel positions, ``N >= 1``.
        radii: ``N`` radii in pixels (one per point) or a scalar.
        softness: edge ramp width in pixels.
    """
    out = np.zeros(shape, np.float32)
    pts = np.asarray(points, np.float32).reshape(-1, 2)
    rad = np.broadcast_to(np.asarray(radii, np.float32), (len(pts),))
    if len(pts) == 0:
        return out
    reach = float(rad.max()) + 2.0 * softness + 1.0
    win = _window(
        shape,
        float(pts[:, 0].min()) - reach,
        float(pts[:, 1].min()) - reach,
        float(pts[:, 0].max()) + reach,
        float(pts[:, 1].max()) + reach,
    )
    if win is None:
        return out
    rs, cs, xx, yy = win
    best = np.full((yy.shape[0], xx.shape[1]), np.inf, np.float32)
    if len(pts) == 1:
        best = np.sqrt((xx - pts[0, 0]) ** 2 + (yy - pts[0, 1]) ** 2) - rad[0]
    for i in range(len(pts) - 1):
        (ax, ay), (bx, by) = pts[i], pts[i + 1]
        ex, ey = bx - ax, by - ay
        length2 = max(float(ex * ex + ey * ey), 1e-6)
        t = np.clip(((xx - ax) * ex + (yy - ay) * ey) / length2, 0.0, 1.0)
        d = np.sqrt((xx - ax - t * ex) ** 2 + (yy - ay - t * ey) ** 2) - (rad[i] + t * (rad[i + 1] - rad[i]))
        best = np.minimum(best, d)
    out[rs, cs] = _ramp(best, softness)
    return out


def union(*masks: np.ndarray) -> np.ndarray:
    """Pixel-wise maximum of soft masks."""
    return np.maximum.reduce(masks).astype(np.float32)


def subtract(mask: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """Soft set difference ``mask \\ cut``."""
    return (mask * (1.0 - cut)).astype(np.float32)


def lobed_shape(
    shape: Shape,
    lobes: Sequence[dict[str, object]],
    *,
    strand_radius: float = 0.0,
    softness: float = 1.0,
) -> np.ndarray:
    """Union of perturbed-ellipse lobes, optionally joined in order by a thin strand.

    Each lobe is a dict with ``center`` ``(x, y)``, ``radius`` and optional ``aspect``, ``angle``
    and ``harmonics`` (see :func:`polar_blob`), all in pixels/radians. With ``strand_radius > 0``
    consecutive lobe centres are joined by a :func:`capsule_chain` of that radius: a segmented
    nucleus, a budding yeast, a chain of cocci.
    """
    masks = [
        polar_blob(
            shape,
            lobe["center"],  # type: ignore[arg-type]
            float(lobe["radius"]),  # type: ignore[arg-type]
            aspect=float(lobe.get("aspect", 1.0)),  # type: ignore[arg-type]
            angle=float(lobe.get("angle", 0.0)),  # type: ignore[arg-type]
            harmonics=lobe.get("harmonics"),  # type: ignore[arg-type]
            softness=softness,
        )
        for lobe in lobes
    ]
    if strand_radius > 0 and len(lobes) > 1:
        centres = np.array([lobe["center"] for lobe in lobes], np.float32)
        masks.append(capsule_chain(shape, centres, strand_radius, softness=softness))
    if not masks:
        return np.zeros(shape, np.float32)
    return union(*masks)


def pallor_discs(
    shape: Shape,
    centers: ArrayLike,
    radii: ArrayLike,
    *,
    aspects: ArrayLike | float = 1.0,
    angles: ArrayLike | float = 0.0,
    pallor: ArrayLike | float = 0.5,
    pallor_radius: float = 0.5,
    rim: float = 0.25,
    softness: float = 1.0,
) -> np.ndarray:
    """Summed thickness map of discs with a pale centre (e.g. biconcave red cells, annuli).

    Each disc has thickness 1 at its rim, ``1 - pallor`` at its centre (a smooth dip of relative
    radius ``pallor_radius``) and a slightly thicker rim band (``rim``). Overlapping discs add up,
    which is what an absorbing stain does.

    Args:
        shape: ``(H, W)`` of the output.
        centers: ``(N, 2)`` ``(x, y)`` pixel centres.
        radii: ``N`` radii in pixels.
        aspects: minor/major ratio(s).
        angles: rotation(s) in radians.
        pallor: depth(s) of the central dip in ``[0, 1]``.
        pallor_radius: dip radius relative to the disc radius.
        rim: extra relative thickness near the edge.
        softness: edge ramp width in pixels.
    """
    out = np.zeros(shape, np.float32)
    ctr = np.asarray(centers, np.float32).reshape(-1, 2)
    n = len(ctr)
    rad = np.broadcast_to(np.asarray(radii, np.float32), (n,))
    asp = np.broadcast_to(np.asarray(aspects, np.float32), (n,))
    ang = np.broadcast_to(np.asarray(angles, np.float32), (n,))
    pal = np.broadcast_to(np.asarray(pallor, np.float32), (n,))
    for i in range(n):
        cx, cy, r = float(ctr[i, 0]), float(ctr[i, 1]), float(rad[i])
        reach = r + 2.0 * softness + 1.0
        win = _window(shape, cx - reach, cy - reach, cx + reach, cy + reach)
        if win is None or r <= 0:
            continue
        rs, cs, xx, yy = win
        dx, dy = xx - cx, yy - cy
        ca, sa = np.cos(ang[i]), np.sin(ang[i])
        u = dx * ca + dy * sa
        v = (-dx * sa + dy * ca) / max(float(asp[i]), 1e-3)
        rho = np.sqrt(u * u + v * v)
        q = rho / r
        body = _ramp(rho - r, softness)
        profile = (
            1.0 - pal[i] * np.exp(-((q / pallor_radius) ** 2)) + rim * np.exp(-(((q - 0.88) / 0.12) ** 2))
        )
        out[rs, cs] += body * profile.astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------------
# fields and textures
# --------------------------------------------------------------------------------------------------


def smooth_noise(shape: Shape, scale: float, seed: int, *, octaves: int = 1) -> np.ndarray:
    """Zero-mean, unit-variance smooth random field with feature size ``scale`` pixels.

    White noise on a coarse grid upsampled with bicubic interpolation; extra octaves add detail at
    half the scale and half the amplitude each. Deterministic in ``seed``.
    """
    rng = np.random.default_rng(int(seed))
    h, w = shape
    total = np.zeros(shape, np.float32)
    amp, sc = 1.0, float(scale)
    for _ in range(max(octaves, 1)):
        if sc <= 1.0:
            layer = rng.standard_normal(shape).astype(np.float32)
        else:
            gh, gw = max(int(np.ceil(h / sc)) + 3, 2), max(int(np.ceil(w / sc)) + 3, 2)
            coarse = rng.standard_normal((gh, gw)).astype(np.float32)
            big = cv2.resize(coarse, (round(gw * sc), round(gh * sc)), interpolation=cv2.INTER_CUBIC)
            oy, ox = int(sc), int(sc)
            layer = big[oy : oy + h, ox : ox + w]
            if layer.shape != (h, w):
                layer = cv2.resize(big, (w, h), interpolation=cv2.INTER_LINEAR)
        total += amp * layer
        amp *= 0.5
        sc *= 0.5
    std = float(total.std())
    return (total - float(total.mean())) / (std if std > 1e-6 else 1.0)


def granule_field(shape: Shape, points: ArrayLike, amplitudes: ArrayLike | float, sigma: float) -> np.ndarray:
    """Sum of Gaussian granules; an isolated granule peaks at its amplitude.

    Points are splatted bilinearly and blurred once, so thousands of granules cost one blur.

    Args:
        shape: ``(H, W)`` of the output.
        points: ``(N, 2)`` ``(x, y)`` pixel positions (points outside are dropped).
        amplitudes: per-granule peak value(s).
        sigma: granule Gaussian sigma in pixels (clamped to >= 0.5).
    """
    h, w = shape
    pts = np.asarray(points, np.float32).reshape(-1, 2)
    amp = np.broadcast_to(np.asarray(amplitudes, np.float32), (len(pts),))
    acc = np.zeros((h + 1, w + 1), np.float32)
    if len(pts):
        x, y = pts[:, 0], pts[:, 1]
        keep = (x >= 0) & (y >= 0) & (x < w - 1e-3) & (y < h - 1e-3)
        x, y, a = x[keep], y[keep], amp[keep]
        x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
        fx, fy = x - x0, y - y0
        for ddx, ddy, wgt in (
            (0, 0, (1 - fx) * (1 - fy)),
            (1, 0, fx * (1 - fy)),
            (0, 1, (1 - fx) * fy),
            (1, 1, fx * fy),
        ):
            np.add.at(acc, (y0 + ddy, x0 + ddx), a * wgt)
    acc = acc[:h, :w]
    s = max(float(sigma), 0.5)
    k = int(2 * np.ceil(3 * s) + 1)
    blurred = cv2.GaussianBlur(acc, (k, k), s, borderType=cv2.BORDER_CONSTANT)
    return (blurred * (2.0 * np.pi * s * s)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# colour and compositing
# --------------------------------------------------------------------------------------------------


def optical_density(rgb: ArrayLike, white: ArrayLike) -> np.ndarray:
    """Optical density ``-ln(rgb / white)`` of a colour seen against ``white`` (any common scale)."""
    rgb_a = np.maximum(np.asarray(rgb, np.float32), 1e-3)
    white_a = np.asarray(white, np.float32)
    return np.maximum(-np.log(rgb_a / white_a), 0.0).astype(np.float32)


def rotate_hue(vectors: ArrayLike, angle: float) -> np.ndarray:
    """Rotate RGB (or optical density) vectors about the grey axis by ``angle`` radians.

    A small rotation shifts every stain's hue consistently while keeping its grey level, as a
    different batch of stain or a different camera white balance would.
    """
    v = np.asarray(vectors, np.float32)
    k = np.full(3, 1.0 / np.sqrt(3.0), np.float32)
    c, s = np.cos(angle), np.sin(angle)
    cross = np.cross(k, v)
    dot = (v @ k)[..., None] if v.ndim > 1 else float(v @ k)
    return (v * c + cross * s + k * dot * (1 - c)).astype(np.float32)


def colour_layer(mask: np.ndarray, colour: ArrayLike) -> np.ndarray:
    """``(H, W, 3)`` layer: a mask times a colour (or optical-density) vector."""
    return mask[..., None] * np.asarray(colour, np.float32)[None, None, :]


def absorb(illumination: ArrayLike, od: np.ndarray) -> np.ndarray:
    """Beer-Lambert transmission: ``illumination * exp(-od)`` (brightfield stains)."""
    return (np.asarray(illumination, np.float32) * np.exp(-od)).astype(np.float32)


def alpha_over(base: np.ndarray, colour: ArrayLike | np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-composite ``colour`` (a vector or an ``(H, W, 3)`` layer) over ``base`` with a soft mask."""
    a = alpha[..., None] if alpha.ndim == 2 else alpha
    return (base * (1.0 - a) + np.asarray(colour, np.float32) * a).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# optics and sensor
# --------------------------------------------------------------------------------------------------


def defocus(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian defocus blur with ``sigma`` pixels (no-op below 0.05)."""
    if sigma < 0.05:
        return image.astype(np.float32, copy=True)
    k = int(2 * np.ceil(3 * sigma) + 1)
    return cv2.GaussianBlur(image.astype(np.float32), (k, k), float(sigma), borderType=cv2.BORDER_REFLECT)


def total_blur(own_sigma: float, params: dict[str, object], size: int) -> float:
    """Defocus sigma in pixels: the generator's own blur combined with the ``--blur`` extra.

    ``params["extra_blur_frac"]`` (set by the phantom writer for graded blur levels) is a sigma as a
    fraction of the image side; independent Gaussian blurs add in quadrature.
    """
    extra = float(params.get("extra_blur_frac", 0.0)) * size  # type: ignore[arg-type]
    return float(np.hypot(own_sigma, extra))


def sensor_noise(image: np.ndarray, seed: int, *, read: float = 0.01, shot: float = 0.0) -> np.ndarray:
    """Add Gaussian read noise and signal-dependent (Poisson-like) shot noise, in ``[0, 1]`` units.

    The per-pixel standard deviation is ``sqrt(read**2 + shot * max(image, 0))``.
    """
    rng = np.random.default_rng(int(seed))
    sd = np.sqrt(read * read + shot * np.maximum(image, 0.0))
    return (image + sd * rng.standard_normal(image.shape).astype(np.float32)).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Clip a ``[0, 1]`` float image and round to ``uint8``."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
