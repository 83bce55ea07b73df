"""Synthetic May-Grünwald-Giemsa peripheral blood smear phantoms, eight CellaVision-style classes.

Each image is a ~36 µm square field of view centred on one target cell (or a platelet clump) lying on a
background of red cells with central pallor, imaged in brightfield. Rendering has two strictly
separated steps so that a parameter dict replays to the same pixels:

1. :func:`sample_params` draws every random quantity (geometry in µm, stain colours as optical
   densities, texture and noise seeds) from a NumPy ``Generator`` given the class label and the
   per-group ``style`` from :func:`sample_style` (a synthetic patient / slide / scanner session);
2. :func:`draw` turns that dict into a ``uint8`` RGB image of any size using only the deterministic
   primitives in :mod:`lablens.phantoms.draw`.

Colour is deliberately a weak cue: stain hue, intensity and azure/eosin balance, background tint
and exposure vary by group, component colours overlap between classes, and red cells cover a large
share of each field, so a classifier has to use nuclear shape, chromatin and granule texture.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lablens.errors import UnknownNameError
from lablens.phantoms import draw as d
from lablens.phantoms.contract import Phantom

CLASSES: tuple[str, ...] = (
    "basophil",
    "eosinophil",
    "erythroblast",
    "ig",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
)

FIELD_UM = 36.0  # side of the field of view in µm at magnification 1 (a CellaVision crop is ~36 µm)
REFERENCE_WHITE = (254.0, 228.0, 202.0)  # cream plasma background of a typical MGG smear image
BLUISH_WHITE = (236.0, 236.0, 250.0)  # cooler white balance seen on some slides
HUE_RANGE = 0.22  # radians of stain-hue rotation at |stain_hue| = 1

# Component colours as they look on the reference background (RGB), and how "azure" (basic,
# blue-purple) versus "eosin" (acidic, pink-orange) each component is, for the stain balance.
_COMPONENTS: dict[str, tuple[tuple[float, float, float], float]] = {
    "rbc": ((212, 168, 170), 0.15),
    "nucleus": ((88, 42, 138), 0.8),
    "cytoplasm_blue": ((160, 158, 206), 1.0),
    "cytoplasm_pink": ((226, 196, 200), 0.35),
    "neutrophil_granules": ((196, 150, 180), 0.45),
    "eosinophil_granules": ((232, 140, 104), 0.0),
    "basophil_granules": ((62, 30, 112), 0.9),
    "azurophilic_granules": ((128, 62, 140), 0.65),
    "platelet_granules": ((142, 84, 152), 0.7),
    "platelet_hyalomere": ((208, 194, 218), 0.9),
}

# ==================================================================================================
# style (per group)
# ==================================================================================================


def sample_style(rng: np.random.Generator) -> dict[str, float]:
    """Sample a synthetic patient / slide / scanner style.

    Returns:
        ``stain_hue`` (-1..1, rotation of all stain colours), ``stain_intensity`` (OD gain),
        ``stain_balance`` (-1 pinker .. +1 bluer), ``background_tint`` (0 cream .. 1 bluish white),
        ``exposure`` (illumination gain), ``focus_blur_um`` (defocus sigma, µm), ``rbc_density``
        (fraction of the field covered by red cells), ``rbc_diameter_um``, ``rbc_pallor`` (depth of
        the central pallor), ``noise_level`` (sensor read noise, 0..1 units) and ``magnification``
        (scanner / crop scale: the field of view is ``FIELD_UM / magnification`` µm across).
    """
    return {
        "stain_hue": float(rng.uniform(-1.0, 1.0)),
        "stain_intensity": float(rng.uniform(0.72, 1.3)),
        "stain_balance": float(rng.uniform(-1.0, 1.0)),
        "background_tint": float(rng.beta(0.8, 2.5)),
        "exposure": float(rng.uniform(0.88, 1.1)),
        "focus_blur_um": float(rng.uniform(0.03, 0.28)),
        "rbc_density": float(rng.uniform(0.3, 0.75)),
        "rbc_diameter_um": float(rng.uniform(6.9, 8.1)),
        "rbc_pallor": float(rng.uniform(0.35, 0.8)),
        "noise_level": float(rng.uniform(0.004, 0.016)),
        "magnification": float(rng.uniform(0.94, 1.08)),
    }


# ==================================================================================================
# small sampling helpers (all take the rng explicitly)
# ==================================================================================================


def stain_cell(
    name: str, style: dict[str, float], rng: np.random.Generator, jitter: float = 0.1
) -> list[float]:
    """Optical-density vector of a component under this group's stain, with per-image jitter."""
    rgb, azure = _COMPONENTS[name]
    od = d.optical_density(rgb, REFERENCE_WHITE)
    balance = 1.0 + 0.35 * style["stain_balance"] * (2.0 * azure - 1.0)
    od = od * style["stain_intensity"] * balance * rng.uniform(1.0 - jitter, 1.0 + jitter)
    od = d.rotate_hue(od, style["stain_hue"] * HUE_RANGE + rng.normal(0.0, 0.05))
    return [float(v) for v in np.maximum(od, 0.0)]


def _mix(a: list[float], b: list[float], t: float) -> list[float]:
    return [float((1.0 - t) * x + t * y) for x, y in zip(a, b, strict=True)]


def _cytoplasm(
    style: dict[str, float], rng: np.random.Generator, pink: tuple[float, float], gain: tuple[float, float]
) -> list[float]:
    """Cytoplasm OD on the shared basophilic (blue) .. acidophilic (pink) axis, shared by all classes."""
    blue, acid = (
        stain_cell("cytoplasm_blue", style, rng, 0.15),
        stain_cell("cytoplasm_pink", style, rng, 0.15),
    )
    g = rng.uniform(*gain)
    return [v * g for v in _mix(blue, acid, rng.uniform(*pink))]


def _nuclear(style: dict[str, float], rng: np.random.Generator, density: tuple[float, float]) -> list[float]:
    """Nuclear OD: one stain for all classes, class-dependent but overlapping density."""
    g = rng.uniform(*density)
    return [v * g for v in stain_cell("nucleus", style, rng, 0.06)]


def outline_harmonics(rng: np.random.Generator, wobble: float, kmax: int = 6) -> list[list[float]]:
    """Random Fourier harmonics ``(k, amp, phase)`` for k = 2..kmax, amplitude ~ wobble / sqrt(k)."""
    return [
        [float(k), float(rng.normal(0.0, wobble / np.sqrt(k))), float(rng.uniform(0, 2 * np.pi))]
        for k in range(2, kmax + 1)
    ]


def points_in_ellipse(rng: np.random.Generator, n: int, rx: float, ry: float) -> np.ndarray:
    t = rng.uniform(0.0, 2 * np.pi, n)
    r = np.sqrt(rng.uniform(0.0, 1.0, n))
    return np.column_stack([r * rx * np.cos(t), r * ry * np.sin(t)])


def _bent_path(rng: np.random.Generator, steps: list[float], turns: list[float]) -> np.ndarray:
    """Points of a path with the given step lengths and heading changes, centred on the origin."""
    heading = rng.uniform(0, 2 * np.pi)
    pts = [np.zeros(2)]
    for step, turn in zip(steps, turns, strict=True):
        heading += turn
        pts.append(pts[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
    arr = np.array(pts)
    return arr - arr.mean(axis=0)


def _fit_inside(points: np.ndarray, reach: float, limit: float) -> np.ndarray:
    """Shrink point offsets so that ``|p| + reach <= limit``."""
    far = float(np.sqrt((points**2).sum(axis=1)).max()) if len(points) else 0.0
    room = max(limit - reach, 0.2)
    return points * (room / far) if far > room else points


def sample_lobes(
    rng: np.random.Generator,
    n: int,
    radius: tuple[float, float],
    gap: tuple[float, float],
    cell_r: float,
    aspect: tuple[float, float],
) -> list[dict[str, Any]]:
    """A chain of ``n`` nuclear lobes (µm, cell frame) that fits inside the cell."""
    radii = rng.uniform(*radius, n)
    steps = [float(radii[i] + radii[i + 1] + rng.uniform(*gap)) for i in range(n - 1)]
    sign = rng.choice([-1.0, 1.0])
    turns = []
    for _ in range(n - 1):
        if rng.random() < 0.25:
            sign = -sign
        turns.append(float(sign * rng.uniform(0.5, 1.4)))
    centres = _fit_inside(_bent_path(rng, steps, turns), float(radii.max()), 0.84 * cell_r)
    return [
        {
            "center": [float(c[0]), float(c[1])],
            "radius": float(r),
            "aspect": float(rng.uniform(*aspect)),
            "angle": float(rng.uniform(0, 2 * np.pi)),
            "harmonics": outline_harmonics(rng, 0.07, 4),
        }
        for c, r in zip(centres, radii, strict=True)
    ]


def _band(
    rng: np.random.Generator, length: float, thick: float, curl: float, cell_r: float, s_shape: bool
) -> dict[str, Any]:
    """A thick curved chain (band, C/S, horseshoe nucleus) in µm, cell frame."""
    n = 8
    step = length / (n - 1)
    turn = curl / (n - 1)
    turns = [0.0] + [
        float(turn * (-1 if s_shape and i >= n // 2 else 1) + rng.normal(0, 0.08)) for i in range(1, n - 1)
    ]
    pts = _fit_inside(_bent_path(rng, [step] * (n - 1), turns), thick, 0.86 * cell_r)
    radii = thick * rng.uniform(0.85, 1.15, n)
    radii[[0, -1]] *= rng.uniform(0.85, 1.1, 2)
    return {"points": pts.tolist(), "radii": radii.tolist()}


def _round_nucleus(
    rng: np.random.Generator, radius: float, offset: float, wobble: float, aspect: tuple[float, float]
) -> dict[str, Any]:
    t = rng.uniform(0, 2 * np.pi)
    return {
        "center": [float(offset * np.cos(t)), float(offset * np.sin(t))],
        "radius": float(radius),
        "aspect": float(rng.uniform(*aspect)),
        "angle": float(rng.uniform(0, 2 * np.pi)),
        "harmonics": outline_harmonics(rng, wobble, 5),
    }


def _indent(lobe: dict[str, Any], rng: np.random.Generator, depth: float, size: float) -> dict[str, Any]:
    """A circle that, subtracted from ``lobe``, leaves a kidney-like notch."""
    t = rng.uniform(0, 2 * np.pi)
    r = lobe["radius"]
    dist = r * (1.0 + size - depth)
    return {
        "center": [lobe["center"][0] + dist * np.cos(t), lobe["center"][1] + dist * np.sin(t)],
        "radius": float(r * size),
    }


def _granules(
    rng: np.random.Generator,
    n: int,
    rx: float,
    ry: float,
    sigma_um: float,
    amp: tuple[float, float],
    od: list[float],
    where: str = "cytoplasm",
) -> dict[str, Any]:
    return {
        "points": points_in_ellipse(rng, n, rx, ry).tolist(),
        "amp": rng.uniform(*amp, n).tolist(),
        "sigma_um": float(sigma_um),
        "od": od,
        "where": where,
    }


def _chromatin(rng: np.random.Generator, scale_um: float, contrast: float, clump: float) -> dict[str, float]:
    return {
        "scale_um": float(scale_um),
        "contrast": float(contrast),
        "clump": float(clump),
        "seed": int(rng.integers(2**31)),
    }


def _base_cell(
    rng: np.random.Generator, diameter: float, aspect: tuple[float, float], wobble: float
) -> dict[str, Any]:
    return {
        "radius": float(diameter / 2.0),
        "aspect": float(rng.uniform(*aspect)),
        "harmonics": outline_harmonics(rng, wobble),
        "texture": float(rng.uniform(0.1, 0.3)),
        "texture_seed": int(rng.integers(2**31)),
        "rim": float(rng.uniform(0.2, 0.6)),
        "lobes": [],
        "strand_radius": 0.0,
        "chains": [],
        "cuts": [],
        "granules": [],
        "vacuoles": [],
    }


# ==================================================================================================
# per-class cell samplers: return (cell spec in µm / cell frame, subtype)
# ==================================================================================================


def sample_neutrophil(rng: np.random.Generator, style: dict[str, float]) -> tuple[dict[str, Any], str]:
    cell = _base_cell(rng, float(np.clip(rng.normal(13.5, 1.0), 11.0, 16.0)), (0.9, 1.0), 0.02)
    r = cell["radius"]
    if rng.random() < 0.85:
        n = int(rng.choice([2, 3, 4, 5], p=[0.15, 0.45, 0.3, 0.10]))
        cell["lobes"] = sample_lobes(rng, n, (1.85, 2.45), (0.6, 1.4), r, (0.6, 0.9))
        cell["strand_radius"] = float(rng.uniform(0.15, 0.28))
        subtype = "segmented"
    else:
        length, thick = rng.uniform(9.0, 12.5), rng.uniform(0.9, 1.25)
        cell["chains"] = [_band(rng, length, thick, rng.uniform(2.8, 4.5), r, rng.random() < 0.3)]
        subtype = "band"
    cell["cyto_od"] = _cytoplasm(style, rng, (0.7, 1.0), (0.55, 1.1))
    cell["nuc_od"] = _nuclear(style, rng, (0.95, 1.3))
    cell["chromatin"] = _chromatin(rng, rng.uniform(0.45, 0.7), rng.uniform(0.3, 0.5), rng.uniform(1.0, 2.5))
    n_gran = int(r * r * rng.uniform(5.0, 9.0))
    gran_od = stain_cell("neutrophil_granules", style, rng, 0.2)
    cell["granules"] = [_granules(rng, n_gran, r, r, 0.22, (0.2, 0.6), gran_od)]
    return cell, subtype


def _eosinophil(rng: np.random.Generator, style: dict[str, float]) -> tuple[dict[str, Any], str]:
    cell = _base_cell(rng, float(np.clip(rng.normal(14.0, 1.0), 11.5, 16.5)), (0.88, 1.0), 0.02)
    r = cell["radius"]
    u = rng.random()
    if u < 0.75:
        cell["lobes"] = sample_lobes(rng, 2, (2.1, 2.8), (0.3, 1.0), r, (0.6, 0.9))
        subtype = "bilobed"
    elif u < 0.93:
        cell["lobes"] = sample_lobes(rng, 3, (1.8, 2.3), (0.3, 0.9), r, (0.6, 0.9))
        subtype = "trilobed"
    else:
        cell["chains"] = [
            _band(rng, rng.uniform(8.0, 11.0), rng.uniform(1.0, 1.35), rng.uniform(2.5, 4.0), r, False)
        ]
        subtype = "band"
    cell["strand_radius"] = float(rng.uniform(0.2, 0.35))
    cell["cyto_od"] = _cytoplasm(style, rng, (0.3, 0.9), (0.4, 0.8))
    cell["nuc_od"] = _nuclear(style, rng, (0.85, 1.2))
    cell["chromatin"] = _chromatin(rng, rng.uniform(0.45, 0.7), rng.uniform(0.3, 0.5), rng.uniform(1.0, 2.5))
    n_gran = int(r * r * rng.uniform(6.0, 9.0))
    gran_od = stain_cell("eosinophil_granules", style, rng, 0.15)
    cell["granules"] = [_granules(rng, n_gran, r, r, rng.uniform(0.32, 0.42), (0.35, 0.8), gran_od)]
    return cell, subtype


def _basophil(rng: np.random.Generator, style: dict[str, float]) -> tuple[dict[str, Any], str]:
    cell = _base_cell(rng, float(np.clip(rng.normal(12.0, 1.0), 9.5, 14.5)), (0.8, 1.0), 0.09)
    r = cell["radius"]
    if rng.random() < 0.5:
        cell["lobes"] = sample_lobes(rng, int(rng.integers(2, 4)), (1.5, 2.2), (-0.3, 0.6), r, (0.6, 0.95))
        subtype = "lobed"
    else:
        cell["lobes"] = [
            _round_nucleus(rng, r * rng.uniform(0.5, 0.68), r * rng.uniform(0.0, 0.2), 0.08, (0.7, 1.0))
        ]
        subtype = "round"
    cell["strand_radius"] = 0.5
    cell["cyto_od"] = _cytoplasm(style, rng, (0.4, 1.0), (0.4, 0.9))
    cell["nuc_od"] = _nuclear(style, rng, (0.5, 0.9))
    cell["chromatin"] = _chromatin(rng, 0.6, 0.2, 1.0)
    gran_od = stain_cell("basophil_granules", style, rng, 0.2)
    sigma = rng.uniform(0.4, 0.55)
    n_gran = int(r * r * rng.uniform(0.9, 3.0))
    cell["granules"] = [
        _granules(rng, n_gran, r, r, sigma, (0.35, 1.0), gran_od, "cell"),
        _granules(
            rng, int(n_gran * rng.uniform(0.1, 0.3)), r * 1.12, r * 1.12, sigma, (0.3, 0.8), gran_od, "free"
        ),
    ]
    return cell, subtype


def _lymphocyte(rng: np.random.Generator, style: dict[str, float]) -> tuple[dict[str, Any], str]:
    large = rng.random() < 0.15
    diameter = rng.uniform(10.0, 12.5) if large else rng.uniform(7.6, 10.2)
    cell = _base_cell(rng, float(diameter), (0.86, 1.0), 0.03)
    r = cell["radius"]
    frac = rng.uniform(0.7, 0.8) if large else rng.uniform(0.8, 0.92)
    nuc = _round_nucleus(rng, r * frac, r * rng.uniform(0.0, 0.98 - frac), 0.04, (0.82, 1.0))
    cell["lobes"] = [nuc]
    if rng.random() < 0.3:
        cell["cuts"] = [_indent(nuc, rng, rng.uniform(0.08, 0.2), rng.uniform(0.3, 0.5))]
    cell["cyto_od"] = _cytoplasm(style, rng, (0.0, 0.55), (0.7, 1.3))
    cell["nuc_od"] = _nuclear(style, rng, (0.9, 1.3))
    cell["chromatin"] = _chromatin(
        rng, rng.uniform(0.55, 0.85), rng.uniform(0.15, 0.3), rng.uniform(0.8, 1.5)
    )
    if large and rng.random() < 0.4:
        azur = stain_cell("azurophilic_granules", style, rng)
        cell["granules"] = [_granules(rng, int(rng.integers(3, 12)), r, r, 0.25, (0.4, 0.9), azur)]
    return cell, "large" if large else "small"


def _monocyte(rng: np.random.Generator, style: dict[str, float]) -> tuple[dict[str, Any], str]:
    cell = _base_cell(rng, float(np.clip(rng.normal(16.5, 1.5), 13.5, 20.0)), (0.7, 0.95), 0.09)
    r = cell["radius"]
    u = rng.random()
    if u < 0.4:
        nuc = _round_nucleus(rng, r * rng.uniform(0.5, 0.6), r * rng.uniform(0.0, 0.2), 0.06, (0.7, 0.95))
        cell["lobes"] = [nuc]
        cell["cuts"] = [_indent(nuc, rng, rng.uniform(0.35, 0.55), rng.uniform(0.4, 0.6))]
        subtype = "kidney"
    elif u < 0.7:
        length, thick = r * rng.uniform(1.1, 1.5), r * rng.uniform(0.24, 0.3)
        cell["chains"] = [_band(rng, length, thick, rng.uniform(2.8, 3.8), r, False)]
        subtype = "horseshoe"
    else:
        cell["lobes"] = [
            _round_nucleus(rng, r * rng.uniform(0.5, 0.6), r * rng.uniform(0.0, 0.2), 0.16, (0.6, 0.9))
        ]
        subtype = "folded"
    cell["cyto_od"] = _cytoplasm(style, rng, (0.15, 0.75), (0.55, 1.05))
    cell["nuc_od"] = _nuclear(style, rng, (0.7, 1.1))
    cell["chromatin"] = _chromatin(rng, rng.uniform(0.3, 0.45), rng.uniform(0.3, 0.45), rng.uniform(0.6, 1.5))
    cell["texture"] = float(rng.uniform(0.25, 0.45))
    if rng.random() < 0.75:
        for _ in range(int(rng.integers(2, 9))):
            pos = points_in_ellipse(rng, 1, r * 0.82, r * 0.82 * cell["aspect"])[0]
            cell["vacuoles"].append({"center": pos.tolist(), "radius": float(rng.uniform(0.4, 1.1))})
    n_gran = int(r * r * rng.uniform(1.0, 3.0))
    cell["granules"] = [
        _granules(rng, n_gran, r, r, 0.22, (0.2, 0.5), stain_cell("neutrophil_granules", style, rng, 0.2))
    ]
    return cell, subtype


def _ig(rng: np.random.Generator, style: dict[str, float]) -> tuple[dict[str, Any], str]:
    subtype = str(rng.choice(["promyelocyte", "myelocyte", "metamyelocyte"], p=[0.35, 0.4, 0.25]))
    mean_d = {"promyelocyte": 15.5, "myelocyte": 14.0, "metamyelocyte": 13.0}[subtype]
    cell = _base_cell(rng, float(np.clip(rng.normal(mean_d, 1.2), 11.5, 18.0)), (0.88, 1.0), 0.025)
    r = cell["radius"]
    fine = stain_cell("neutrophil_granules", style, rng, 0.2)
    if subtype == "promyelocyte":
        nuc = _round_nucleus(rng, r * rng.uniform(0.55, 0.66), r * rng.uniform(0.25, 0.38), 0.03, (0.8, 1.0))
        cell["lobes"] = [nuc]
        cell["cyto_od"] = _cytoplasm(style, rng, (0.0, 0.5), (0.6, 1.2))
        n_gran = int(r * r * rng.uniform(1.2, 2.5))
        azur = stain_cell("azurophilic_granules", style, rng)
        cell["granules"] = [_granules(rng, n_gran, r, r, rng.uniform(0.28, 0.36), (0.6, 1.2), azur, "cell")]
        chrom = _chromatin(rng, rng.uniform(0.3, 0.4), rng.uniform(0.15, 0.3), rng.uniform(0.5, 1.0))
    elif subtype == "myelocyte":
        nuc = _round_nucleus(rng, r * rng.uniform(0.5, 0.6), r * rng.uniform(0.3, 0.4), 0.04, (0.65, 0.9))
        cell["lobes"] = [nuc]
        if rng.random() < 0.6:
            cell["cuts"] = [_indent(nuc, rng, rng.uniform(0.05, 0.18), rng.uniform(0.6, 1.0))]
        cell["cyto_od"] = _cytoplasm(style, rng, (0.25, 0.9), (0.6, 1.2))
        cell["granules"] = [_granules(rng, int(r * r * rng.uniform(4.0, 7.0)), r, r, 0.24, (0.4, 0.9), fine)]
        chrom = _chromatin(rng, rng.uniform(0.35, 0.5), rng.uniform(0.2, 0.35), rng.uniform(0.8, 1.5))
    else:
        nuc = _round_nucleus(rng, r * rng.uniform(0.5, 0.58), r * rng.uniform(0.22, 0.36), 0.04, (0.6, 0.85))
        cell["lobes"] = [nuc]
        cell["cuts"] = [_indent(nuc, rng, rng.uniform(0.3, 0.5), rng.uniform(0.4, 0.6))]
        cell["cyto_od"] = _cytoplasm(style, rng, (0.5, 1.0), (0.6, 1.2))
        cell["granules"] = [_granules(rng, int(r * r * rng.uniform(4.0, 7.0)), r, r, 0.24, (0.4, 0.9), fine)]
        chrom = _chromatin(rng, rng.uniform(0.4, 0.6), rng.uniform(0.25, 0.4), rng.uniform(1.0, 2.0))
    cell["nuc_od"] = _nuclear(style, rng, (0.75, 1.2))
    cell["chromatin"] = chrom
    return cell, subtype


def _erythroblast(rng: np.random.Generator, style: dict[str, float]) -> tuple[dict[str, Any], str]:
    stage = float(rng.uniform(0.0, 1.0))  # 0 basophilic .. 1 orthochromatic
    diameter = float(np.clip(rng.normal(10.2 - 1.5 * stage, 1.0), 7.5, 13.0))
    cell = _base_cell(rng, diameter, (0.88, 1.0), 0.02)
    r = cell["radius"]
    frac = rng.uniform(0.48, 0.66) - 0.15 * stage
    cell["lobes"] = [_round_nucleus(rng, r * frac, r * rng.uniform(0.05, 0.95 - frac), 0.01, (0.92, 1.0))]
    pink, gain = (stage * 0.7, stage * 0.7 + 0.3), (1.5 - 0.6 * stage, 1.9 - 0.7 * stage)
    cell["cyto_od"] = _cytoplasm(style, rng, pink, gain)
    cell["texture"] = float(rng.uniform(0.05, 0.12))
    cell["nuc_od"] = _nuclear(style, rng, (0.95, 1.4))
    pyknotic = stage > 0.65 and rng.random() < 0.6
    if pyknotic:
        cell["chromatin"] = _chromatin(rng, 0.8, 0.06, 1.0)
    else:
        cell["chromatin"] = _chromatin(
            rng, rng.uniform(0.5, 0.75), rng.uniform(0.3, 0.5), rng.uniform(1.5, 3.0)
        )
    names = ("basophilic", "polychromatic", "orthochromatic")
    return cell, names[min(int(stage * 3), 2)]


def platelet_fragments(
    rng: np.random.Generator, style: dict[str, float], n: int, anchor: np.ndarray, spread: float
) -> list[dict[str, Any]]:
    frags = []
    pos = anchor.astype(float).copy()
    for i in range(n):
        if i:
            ang = rng.uniform(0, 2 * np.pi)
            pos = (
                anchor + rng.normal(0.0, spread, 2)
                if rng.random() < 0.3
                else pos + rng.uniform(1.4, 2.6) * np.array([np.cos(ang), np.sin(ang)])
            )
        radius = float(rng.uniform(1.2, 2.1))
        frags.append(
            {
                "center": pos.tolist(),
                "radius": radius,
                "aspect": float(rng.uniform(0.65, 1.0)),
                "angle": float(rng.uniform(0, 2 * np.pi)),
                "harmonics": outline_harmonics(rng, 0.1, 5),
                "hyalo_od": stain_cell("platelet_hyalomere", style, rng, 0.3),
                "granules": _granules(
                    rng,
                    int(radius * radius * rng.uniform(6.0, 14.0)),
                    radius * 0.75,
                    radius * 0.75,
                    0.2,
                    (0.4, 1.0),
                    stain_cell("platelet_granules", style, rng, 0.2),
                ),
            }
        )
    return frags


CELL_SAMPLERS = {
    "basophil": _basophil,
    "eosinophil": _eosinophil,
    "erythroblast": _erythroblast,
    "ig": _ig,
    "lymphocyte": _lymphocyte,
    "monocyte": _monocyte,
    "neutrophil": sample_neutrophil,
}


# ==================================================================================================
# red-cell background
# ==================================================================================================


def sample_red_cells(
    rng: np.random.Generator,
    style: dict[str, float],
    keep_out: list[tuple[float, float, float]],
    field_um: float,
) -> dict[str, Any]:
    """Dart-throw red cells over the field (plus a margin), allowing partial overlaps.

    ``keep_out`` holds ``(x, y, radius)`` circles in µm that red-cell centres stay ``radius`` (plus
    a little) away from: the target cell and any neighbouring white cells.
    """
    half = field_um / 2 + 4.0
    mean_r = style["rbc_diameter_um"] / 2
    density = style["rbc_density"] * rng.uniform(0.7, 1.3)
    target = int(density * (2 * half) ** 2 / (np.pi * mean_r**2))
    overlap = rng.uniform(0.72, 0.92)
    cand = rng.uniform(-half, half, (target * 4, 2))
    radii = mean_r * rng.normal(1.0, 0.05, len(cand))
    away = np.ones(len(cand), bool)
    for kx, ky, kr in keep_out:
        away &= np.hypot(cand[:, 0] - kx, cand[:, 1] - ky) > kr + 0.45 * radii
    cand, radii = cand[away], radii[away]
    gap = np.hypot(cand[:, None, 0] - cand[None, :, 0], cand[:, None, 1] - cand[None, :, 1])
    clash = gap < overlap * (radii[:, None] + radii[None, :])
    chosen = np.zeros(len(cand), bool)
    n = 0
    for i in range(len(cand)):
        if n >= target:
            break
        if not clash[i, chosen].any():
            chosen[i] = True
            n += 1
    return {
        "centers": cand[chosen].tolist(),
        "radii": radii[chosen].tolist(),
        "aspects": rng.uniform(0.86, 1.0, n).tolist(),
        "angles": rng.uniform(0, np.pi, n).tolist(),
        "pallor": np.clip(style["rbc_pallor"] + rng.normal(0.0, 0.08, n), 0.05, 0.9).tolist(),
        "pallor_radius": float(rng.uniform(0.42, 0.55)),
        "od": stain_cell("rbc", style, rng, 0.1),
    }


def cell_reach(cell: dict[str, Any]) -> float:
    return float(cell["radius"] * (1.0 + sum(abs(h[1]) for h in cell["harmonics"])))


def sample_neighbour(
    rng: np.random.Generator, style: dict[str, float], field_um: float, avoid: tuple[float, float, float]
) -> dict[str, Any]:
    """A white cell cut by the field edge (smears are crowded): a nuisance the classifier must ignore."""
    kind = str(rng.choice(_NEIGHBOUR_KINDS, p=_NEIGHBOUR_P))
    cell, _ = CELL_SAMPLERS[kind](rng, style)
    ang = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(ang), np.sin(ang)])
    dist = field_um / 2 + rng.uniform(-0.2, 0.5) * cell["radius"]
    ax, ay, ar = avoid
    while np.hypot(*(dist * direction - (ax, ay))) < ar + cell_reach(cell) + 0.3:
        dist += 0.5
    cell["center"] = (dist * direction).tolist()
    cell["angle"] = float(rng.uniform(0, 2 * np.pi))
    cell["kind"] = kind
    return cell


_NEIGHBOUR_KINDS = ("neutrophil", "lymphocyte", "monocyte", "eosinophil")
_NEIGHBOUR_P = (0.55, 0.3, 0.1, 0.05)


# ==================================================================================================
# parameters
# ==================================================================================================


def sample_params(label: str, rng: np.random.Generator, style: dict[str, float]) -> dict[str, Any]:
    """Draw every random quantity of one image; :func:`draw` renders the result deterministically."""
    if label not in CLASSES:
        raise UnknownNameError(f"unknown blood-cell class {label!r}; expected one of {CLASSES}")
    field_um = FIELD_UM / (style["magnification"] * rng.uniform(0.97, 1.03))
    offset = np.clip(rng.normal(0.0, 0.8, 2), -2.0, 2.0)
    cell: dict[str, Any] | None = None
    platelets: list[dict[str, Any]] = []
    if label == "platelet":
        n = int(rng.choice([1, 2, 3, 4, 5, 6, 7], p=[0.4, 0.2, 0.13, 0.09, 0.07, 0.06, 0.05]))
        platelets = platelet_fragments(rng, style, n, offset, 1.2)
        far = max(float(np.hypot(*(np.array(f["center"]) - offset))) + f["radius"] for f in platelets)
        target = (float(offset[0]), float(offset[1]), far + 0.3)
        subtype = "single" if n == 1 else "clump"
    else:
        cell, subtype = CELL_SAMPLERS[label](rng, style)
        cell["center"] = offset.tolist()
        cell["angle"] = float(rng.uniform(0, 2 * np.pi))
        target = (float(offset[0]), float(offset[1]), cell_reach(cell))
    keep_out = [target]
    neighbours = []
    if rng.random() < 0.25:
        neighbours.append(sample_neighbour(rng, style, field_um, target))
        keep_out.append((*neighbours[0]["center"], cell_reach(neighbours[0])))
    if label != "platelet" and rng.random() < 0.3:
        ang = rng.uniform(0, 2 * np.pi)
        anchor = np.array([np.cos(ang), np.sin(ang)]) * rng.uniform(11.0, 16.0)
        platelets = platelet_fragments(rng, style, int(rng.integers(1, 3)), anchor, 1.0)
    tint = style["background_tint"]
    white = np.array(REFERENCE_WHITE) * (1 - tint) + np.array(BLUISH_WHITE) * tint
    return {
        "label": label,
        "subtype": subtype,
        "illumination": (white / 255.0 * style["exposure"] * rng.uniform(0.93, 1.07)).tolist(),
        "smear_thickness": float(rng.uniform(0.82, 1.18)),
        "vignette": float(rng.uniform(0.0, 0.02)),
        "vignette_seed": int(rng.integers(2**31)),
        "field_um": field_um,
        "rbc": sample_red_cells(rng, style, keep_out, field_um),
        "cell": cell,
        "neighbours": neighbours,
        "platelets": platelets,
        "blur_um": float(style["focus_blur_um"] + abs(rng.normal(0.0, 0.06))),
        "noise_read": float(style["noise_level"] * rng.uniform(0.8, 1.25)),
        "noise_shot": float(rng.uniform(0.0002, 0.0015)),
        "noise_seed": int(rng.integers(2**31)),
    }


# ==================================================================================================
# drawing
# ==================================================================================================


def cell_to_field(points: Any, cell: dict[str, Any]) -> np.ndarray:
    """Rotate cell-frame µm offsets by the cell angle and translate to the cell centre."""
    p = np.asarray(points, float).reshape(-1, 2)
    c, s = np.cos(cell["angle"]), np.sin(cell["angle"])
    rot = np.array([[c, -s], [s, c]])
    return p @ rot.T + np.asarray(cell["center"], float)


def draw_red_cells(shape: tuple[int, int], fr: d.Frame, rbc: dict[str, Any]) -> np.ndarray:
    if not rbc["radii"]:
        return np.zeros((*shape, 3), np.float32)
    thickness = d.pallor_discs(
        shape,
        fr.xy(rbc["centers"]),
        np.asarray(rbc["radii"]) * fr.ppu,
        aspects=rbc["aspects"],
        angles=rbc["angles"],
        pallor=rbc["pallor"],
        pallor_radius=rbc["pallor_radius"],
        softness=max(0.6, 0.12 * fr.ppu),
    )
    return d.colour_layer(thickness, rbc["od"])


def nucleus_mask(shape: tuple[int, int], fr: d.Frame, cell: dict[str, Any], soft: float) -> np.ndarray:
    masks = []
    if cell["lobes"]:
        lobes = [
            {
                "center": fr.xy(cell_to_field(lobe["center"], cell)[0]),
                "radius": lobe["radius"] * fr.ppu,
                "aspect": lobe["aspect"],
                "angle": lobe["angle"] + cell["angle"],
                "harmonics": lobe["harmonics"],
            }
            for lobe in cell["lobes"]
        ]
        masks.append(d.lobed_shape(shape, lobes, strand_radius=cell["strand_radius"] * fr.ppu, softness=soft))
    for chain in cell["chains"]:
        pts = fr.xy(cell_to_field(chain["points"], cell))
        masks.append(d.capsule_chain(shape, pts, np.asarray(chain["radii"]) * fr.ppu, softness=soft))
    nuc = d.union(*masks) if masks else np.zeros(shape, np.float32)
    for cut in cell["cuts"]:
        hole = d.polar_blob(
            shape, fr.xy(cell_to_field(cut["center"], cell)[0]), cut["radius"] * fr.ppu, softness=soft
        )
        nuc = d.subtract(nuc, hole)
    return nuc


def _draw_granules(
    shape: tuple[int, int], fr: d.Frame, sets: list[dict[str, Any]], place: Any
) -> list[tuple[np.ndarray, list[float], str]]:
    out = []
    for g in sets:
        if not g["points"]:
            continue
        field = d.granule_field(shape, fr.xy(place(g["points"])), g["amp"], g["sigma_um"] * fr.ppu)
        out.append((field, g["od"], g["where"]))
    return out


def draw_cell(shape: tuple[int, int], fr: d.Frame, cell: dict[str, Any], seed_mix: int) -> np.ndarray:
    soft = max(0.7, 0.1 * fr.ppu)
    centre = fr.xy(cell["center"])
    radius = cell["radius"] * fr.ppu
    outline = {
        "aspect": cell["aspect"],
        "angle": cell["angle"],
        "harmonics": cell["harmonics"],
        "softness": soft,
    }
    body = d.polar_blob(shape, centre, radius, **outline)
    inner = d.polar_blob(shape, centre, max(radius - 0.5 * fr.ppu, 1.0), **outline)
    nuc = np.minimum(nucleus_mask(shape, fr, cell, soft), body)
    vac = np.zeros(shape, np.float32)
    for v in cell["vacuoles"]:
        vac = np.maximum(
            vac,
            d.polar_blob(
                shape, fr.xy(cell_to_field(v["center"], cell)[0]), v["radius"] * fr.ppu, softness=soft
            ),
        )
    cyto = body * (1.0 - nuc) * (1.0 - 0.9 * vac)
    tex = d.smooth_noise(shape, 0.7 * fr.ppu, cell["texture_seed"] + seed_mix)
    cyto_density = cyto * (1.0 + cell["texture"] * tex + cell["rim"] * (body - inner))
    od = d.colour_layer(np.maximum(cyto_density, 0.0), cell["cyto_od"])
    chrom = cell["chromatin"]
    noise = d.smooth_noise(shape, chrom["scale_um"] * fr.ppu, chrom["seed"] + seed_mix, octaves=2)
    nuc_density = nuc * (1.0 + chrom["contrast"] * np.tanh(chrom["clump"] * noise))
    od += d.colour_layer(nuc_density, cell["nuc_od"])
    for field, g_od, where in _draw_granules(shape, fr, cell["granules"], lambda p: cell_to_field(p, cell)):
        if where == "cytoplasm":
            field = field * cyto
        elif where == "cell":
            field = field * body * (1.0 - 0.9 * vac)
        od += d.colour_layer(field, g_od)
    return od


def draw_platelets(shape: tuple[int, int], fr: d.Frame, frags: list[dict[str, Any]]) -> np.ndarray:
    od = np.zeros((*shape, 3), np.float32)
    soft = max(0.6, 0.1 * fr.ppu)
    for f in frags:
        centre = np.asarray(f["center"], float)
        body = d.polar_blob(
            shape,
            fr.xy(centre),
            f["radius"] * fr.ppu,
            aspect=f["aspect"],
            angle=f["angle"],
            harmonics=f["harmonics"],
            softness=soft,
        )
        od += d.colour_layer(body, f["hyalo_od"])
        g = f["granules"]
        field = d.granule_field(
            shape, fr.xy(np.asarray(g["points"]) + centre), g["amp"], g["sigma_um"] * fr.ppu
        )
        od += d.colour_layer(field * body, g["od"])
    return od


def draw(params: dict[str, Any], size: int = 128) -> np.ndarray:
    """Render a parameter dict from :func:`sample_params` as a ``uint8`` RGB image ``size`` x ``size``."""
    shape = (size, size)
    fr = d.Frame(size, params["field_um"])
    seed_mix = size * 7_919  # textures are resampled per output size; geometry is not
    od = draw_red_cells(shape, fr, params["rbc"])
    if params["platelets"]:
        od += draw_platelets(shape, fr, params["platelets"])
    for i, neighbour in enumerate(params["neighbours"]):
        od += draw_cell(shape, fr, neighbour, seed_mix + 101 * (i + 1))
    if params["cell"] is not None:
        od += draw_cell(shape, fr, params["cell"], seed_mix)
    od *= params["smear_thickness"]
    light = np.asarray(params["illumination"], np.float32)[None, None, :]
    if params["vignette"] > 0:
        field = d.smooth_noise(shape, size / 2.0, params["vignette_seed"] + seed_mix)
        light = light * (1.0 + params["vignette"] * field)[..., None]
    img = d.absorb(light, od)
    img = d.defocus(img, d.total_blur(params["blur_um"] * fr.ppu, params, size))
    img = d.sensor_noise(
        img, params["noise_seed"] + seed_mix, read=params["noise_read"], shot=params["noise_shot"]
    )
    return d.to_uint8(img)


# ==================================================================================================
# truth and convenience
# ==================================================================================================


def truth(params: dict[str, Any], size: int) -> dict[str, Any]:
    """Per-image generator truth (scalars) for a manifest: geometry, counts, optics."""
    cell = params["cell"]
    fr = d.Frame(size, params["field_um"])
    out: dict[str, Any] = {
        "subtype": params["subtype"],
        "blur_sigma": round(params["blur_um"] * fr.ppu, 4),
        "field_um": round(params["field_um"], 3),
        "noise_sigma": round(params["noise_read"], 5),
        "smear_thickness": round(params["smear_thickness"], 4),
        "n_rbc": len(params["rbc"]["radii"]),
        "n_platelet_fragments": len(params["platelets"]),
        "n_neighbour_cells": len(params["neighbours"]),
    }
    if cell is None:
        centre = np.mean([f["center"] for f in params["platelets"]], axis=0)
        out.update(cell_diameter_um=0.0, n_lobes=0, n_granules=0, n_vacuoles=0, rotation_deg=0.0)
    else:
        centre = np.asarray(cell["center"])
        out.update(
            cell_diameter_um=round(2 * cell["radius"] * np.sqrt(cell["aspect"]), 3),
            n_lobes=len(cell["lobes"]) if cell["lobes"] and not cell["chains"] else 1,
            n_granules=sum(len(g["points"]) for g in cell["granules"]),
            n_vacuoles=len(cell["vacuoles"]),
            rotation_deg=round(float(np.degrees(cell["angle"])), 2),
        )
    out.update(offset_x_um=round(float(centre[0]), 3), offset_y_um=round(float(centre[1]), 3))
    return out


TASK = Phantom(
    name="blood-cells",
    classes=CLASSES,
    description="May-Grünwald-Giemsa peripheral blood smear, 8 cell classes (CellaVision-like crops)",
    style_sampler=sample_style,
    param_sampler=sample_params,
    drawer=draw,
    truth_fn=truth,
)
