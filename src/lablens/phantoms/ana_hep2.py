"""Synthetic ANA indirect immunofluorescence on HEp-2 cells: seven ICAP nuclear patterns, FITC on black.

Single-cell images (``TASK``) are ~24 µm crops centred on one cell, like the ICPR 2012/2014 HEp-2 cell
datasets, with neighbouring cells cut by the edge. Whole fields (``TASK.fields``) are HEp-2 monolayers
of 30-80 cells whose label is the serum's pattern (plus ``negative``); every nucleus is an annotated
instance, ``interphase`` or ``mitotic``.

Patterns (ICAP codes; the sub-code is fixed per serum through the style's ``variant``):

* ``homogeneous`` (AC-1): even nucleoplasm, faint nucleoli; mitotic chromatin brighter than interphase;
* ``fine_speckled`` (AC-4) / ``coarse_speckled`` (AC-5): dense fine or sparser large speckles, nucleoli
  unstained; mitotic chromatin unstained inside a speckled mitotic cell body;
* ``centromere`` (AC-3): 40-80 equal dots over the nucleus, on the plate in mitoses;
* ``nucleolar`` (AC-8 smooth / AC-9 clumpy / AC-10 punctate): 2-6 bright nucleoli over dim nucleoplasm;
  AC-10 mitoses show 2-6 NOR dots on the plate;
* ``nuclear_dots`` (AC-7 few, 3-5 / AC-6 multiple, 6-20): discrete dots of varying size;
* ``nuclear_envelope`` (AC-11 smooth / AC-12 punctate): bright rim, dim centre.

Brightness follows the serum's titer (``titer_log2`` in the style) times camera exposure and a per-cell
factor, so intensity is a weak cue that does not separate the patterns. :func:`sample_params` /
:func:`sample_field` draw every random number; :func:`draw` / :func:`draw_field` render
deterministically (dense speckle positions come from seeds stored in the parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from lablens.errors import UnknownNameError
from lablens.phantoms import draw as d
from lablens.phantoms.contract import Instance, Phantom, PhantomFields

CLASSES: tuple[str, ...] = (
    "centromere",
    "coarse_speckled",
    "fine_speckled",
    "homogeneous",
    "nuclear_dots",
    "nuclear_envelope",
    "nucleolar",
)
FIELD_CLASSES: tuple[str, ...] = tuple(sorted((*CLASSES, "negative")))
INSTANCE_CLASSES: tuple[str, ...] = ("interphase", "mitotic")

CROP_UM = 24.0  # side of a single-cell crop at magnification 1 (tight, like ICPR crops)
BASE_DILUTION = 80.0  # screening dilution: titer = 80 * 2**round(titer_log2)
MITOTIC_SHARE_CROPS = 0.15  # share of single-cell crops centred on a mitotic cell
_PHASES = ("prophase", "metaphase", "anaphase")
_PHASE_P = (0.3, 0.55, 0.15)

Cell = dict[str, Any]


def _icap(pattern: str, variant: float) -> str:
    if pattern == "nucleolar":
        return "AC-8" if variant < 1 / 3 else "AC-9" if variant < 2 / 3 else "AC-10"
    if pattern == "nuclear_dots":
        return "AC-7" if variant < 0.3 else "AC-6"
    if pattern == "nuclear_envelope":
        return "AC-11" if variant < 0.5 else "AC-12"
    return {
        "homogeneous": "AC-1",
        "centromere": "AC-3",
        "fine_speckled": "AC-4",
        "coarse_speckled": "AC-5",
        "negative": "AC-0",
    }[pattern]


# ==================================================================================================
# style (per serum / slide / camera session)
# ==================================================================================================


def sample_style(rng: np.random.Generator) -> dict[str, float]:
    """Sample one serum on one slide under one camera setting.

    Returns:
        ``titer_log2`` (end-point titer as log2 of titer/80), ``exposure`` (camera gain),
        ``variant`` (picks the ICAP sub-pattern: AC-8/9/10, AC-6/7, AC-11/12), ``nucleus_scale``,
        ``magnification``, ``cyto_level`` (cytoplasmic staining), ``background``, ``unevenness``
        (illumination), ``red_leak`` / ``blue_leak`` (colour of the green channel), ``glow``
        (out-of-focus haze), ``speckle_scale``, ``focus_blur_um`` and ``noise_level``.
    """
    return {
        "titer_log2": float(rng.uniform(0.0, 5.0)),
        "exposure": float(rng.uniform(0.75, 1.3)),
        "variant": float(rng.uniform(0.0, 1.0)),
        "nucleus_scale": float(rng.uniform(0.9, 1.12)),
        "magnification": float(rng.uniform(0.9, 1.1)),
        "cyto_level": float(rng.uniform(0.04, 0.18)),
        "background": float(rng.uniform(0.012, 0.05)),
        "unevenness": float(rng.uniform(0.0, 0.3)),
        "red_leak": float(rng.uniform(0.02, 0.1)),
        "blue_leak": float(rng.uniform(0.0, 0.06)),
        "glow": float(rng.uniform(0.05, 0.25)),
        "speckle_scale": float(rng.uniform(0.85, 1.2)),
        "focus_blur_um": float(rng.uniform(0.05, 0.3)),
        "noise_level": float(rng.uniform(0.004, 0.014)),
    }


def _serum(
    pattern: str, rng: np.random.Generator, style: dict[str, float], subtype: str | None = None
) -> dict[str, Any]:
    """Per-image serum constants: pattern, ICAP sub-code, brightness, titer, speckle and dot sizes.

    ``subtype`` overrides the ICAP code looked up from ``pattern`` (for patterns of other modules).
    """
    if pattern == "negative":
        gain, titer = style["exposure"] * rng.uniform(0.035, 0.07), 0.0
    else:
        gain = style["exposure"] * 0.25 * 2.0 ** (0.4 * style["titer_log2"]) * rng.uniform(0.9, 1.1)
        titer = BASE_DILUTION * 2.0 ** round(style["titer_log2"])
    return {
        "pattern": pattern,
        "subtype": subtype or _icap(pattern, style["variant"]),
        "gain": float(gain),
        "titer": float(titer),
        "scale": style["nucleus_scale"],
        "speckle": style["speckle_scale"],
        "dot_sigma": float(rng.uniform(0.24, 0.32)),
    }


# ==================================================================================================
# geometry in µm (cell frame: u along the nucleus' major axis, rotated by ``angle`` about ``center``)
# ==================================================================================================


def _outline(rng: np.random.Generator, wobble: float, kmax: int = 5) -> list[list[float]]:
    return [
        [float(k), float(rng.normal(0.0, wobble / np.sqrt(k))), float(rng.uniform(0, 2 * np.pi))]
        for k in range(2, kmax + 1)
    ]


def _radius_at(shape: dict[str, Any], theta: np.ndarray) -> np.ndarray:
    mod = np.ones_like(theta)
    for k, amp, phase in shape["harmonics"]:
        mod += amp * np.cos(k * theta + phase)
    return shape["radius"] * mod


def _reach(shape: dict[str, Any]) -> float:
    return float(shape["radius"] * (1.0 + sum(abs(h[1]) for h in shape["harmonics"])))


def _shape_points(
    rng: np.random.Generator, shape: dict[str, Any], n: int, lo: float, hi: float
) -> np.ndarray:
    """``n`` points of a perturbed ellipse (its own frame) between radius fractions ``lo`` and ``hi``."""
    theta = rng.uniform(0.0, 2 * np.pi, n)
    rho = np.sqrt(rng.uniform(lo * lo, hi * hi, n)) * _radius_at(shape, theta)
    return np.column_stack([rho * np.cos(theta), shape["aspect"] * rho * np.sin(theta)])


def _rotate(points: Any, angle: float) -> np.ndarray:
    p = np.asarray(points, float).reshape(-1, 2)
    c, s = np.cos(angle), np.sin(angle)
    return p @ np.array([[c, s], [-s, c]])


def _spaced(rng: np.random.Generator, sampler: Any, n: int, dmin: float) -> np.ndarray:
    """Exactly ``n`` points from ``sampler(rng, m)``, greedily at least ``dmin`` apart (relaxed if needed)."""
    pts = np.zeros((n, 2))
    k = 0
    while k < n:
        for p in sampler(rng, 4 * n + 8):
            if k == 0 or ((pts[:k] - p) ** 2).sum(axis=1).min() >= dmin * dmin:
                pts[k] = p
                k += 1
                if k == n:
                    break
        dmin *= 0.8
    return pts


def _inside(cell: Cell, pts: np.ndarray) -> np.ndarray:
    """Which field points (µm) lie inside the cell's nuclear footprint."""
    local = _rotate(pts - np.asarray(cell["center"]), -cell["angle"])
    shape = cell["nucleus"]
    u, v = local[:, 0], local[:, 1] / shape["aspect"]
    return np.hypot(u, v) < _radius_at(shape, np.arctan2(v, u))


def _footprint_outline(cell: Cell, margin: float) -> np.ndarray:
    shape = cell["nucleus"]
    theta = np.linspace(0.0, 2 * np.pi, 72, endpoint=False)
    rho = _radius_at(shape, theta)
    p = np.column_stack([rho * np.cos(theta), shape["aspect"] * rho * np.sin(theta)])
    p *= 1.0 + margin / np.maximum(np.hypot(p[:, 0], p[:, 1]), 1e-6)[:, None]
    return _rotate(p, cell["angle"]) + np.asarray(cell["center"])


def _clash(a: Cell, b: Cell, margin: float) -> bool:
    """Nuclear footprints of ``a`` and ``b`` come closer than ``margin`` µm."""
    gap = np.hypot(*(np.asarray(a["center"]) - np.asarray(b["center"])))
    if gap > _reach(a["nucleus"]) + _reach(b["nucleus"]) + margin:
        return False
    return bool(
        _inside(b, _footprint_outline(a, margin)).any() or _inside(a, _footprint_outline(b, margin)).any()
    )


def _clash_wide(a: Cell, b: Cell, margin: float) -> bool:
    """:func:`_clash` for margins as large as the nuclei, where one inflated outline could enclose the other.

    Tests rings every 1.5 µm or less between the outline and ``margin``, and each centre in the other nucleus.
    """
    rings = np.linspace(0.0, margin, int(np.ceil(margin / 1.5)) + 1)
    if any(_clash(a, b, m) for m in rings[::-1]):
        return True
    return bool(_inside(a, np.asarray([b["center"]])).any() or _inside(b, np.asarray([a["center"]])).any())


# ==================================================================================================
# cells
# ==================================================================================================


def _footprint(rng: np.random.Generator, serum: dict[str, Any], phase: str) -> tuple[dict[str, Any], list]:
    """Nuclear shape (interphase, prophase) or plate chains plus an enclosing circle (metaphase, anaphase)."""
    s = serum["scale"]
    if phase == "interphase":
        shape = {
            "radius": float(np.clip(rng.normal(7.0, 1.0), 5.0, 9.8) * s),
            "aspect": float(rng.uniform(0.55, 0.9)),
            "harmonics": _outline(rng, rng.uniform(0.015, 0.05)),
        }
        return shape, []
    if phase == "prophase":
        shape = {"radius": float(rng.uniform(4.6, 6.0) * s), "aspect": float(rng.uniform(0.82, 1.0))}
        shape["harmonics"] = _outline(rng, 0.03, 4)
        return shape, []
    length, half = rng.uniform(7.5, 11.0) * s, rng.uniform(1.1, 1.6) * s
    offsets = [0.0]
    if phase == "anaphase":
        sep = rng.uniform(3.2, 5.5) * s
        offsets, length, half = [-sep / 2, sep / 2], length * rng.uniform(0.75, 0.95), half * 0.85
    bend = rng.uniform(-0.1, 0.1) * length
    u = np.linspace(-length / 2, length / 2, 7)
    chains = []
    for off in offsets:
        curve = bend if off == 0 else abs(bend) * np.sign(off)
        v = off + curve * (1.0 - (2.0 * u / length) ** 2)
        radii = half * np.clip(1.0 + 0.18 * rng.standard_normal(7), 0.6, 1.35)
        radii[[0, -1]] *= 0.75
        chains.append({"points": np.column_stack([u, v]).tolist(), "radii": radii.tolist()})
    for _ in range(int(rng.integers(14, 30)) * len(offsets)):  # chromosome arms sticking out of the plate
        chain = chains[int(rng.integers(len(offsets)))]
        pts, radii = np.asarray(chain["points"]), np.asarray(chain["radii"])
        t = rng.uniform(0, len(pts) - 1)
        i = min(int(t), len(pts) - 2)
        p, r = pts[i] + (t - i) * (pts[i + 1] - pts[i]), radii[i] + (t - i) * (radii[i + 1] - radii[i])
        ang = np.pi / 2 * rng.choice([-1.0, 1.0]) + rng.normal(0.0, 0.7)
        direction = np.array([np.cos(ang), np.sin(ang)])
        end = p + direction * (r * rng.uniform(0.6, 1.0) + rng.uniform(0.2, 1.1) * s)
        width = rng.uniform(0.25, 0.38) * s
        chains.append(
            {"points": [(p + 0.5 * r * direction).tolist(), end.tolist()], "radii": [width, 0.8 * width]}
        )
    extent = max(float(np.hypot(*np.asarray(c["points"]).T).max() + max(c["radii"])) for c in chains)
    return {"radius": extent + 0.15, "aspect": 1.0, "harmonics": []}, chains


def _levels(pattern: str, subtype: str, rng: np.random.Generator) -> dict[str, float]:
    """Relative brightness of each compartment (times the cell's gain)."""
    u = rng.uniform
    z = {
        "base": 0.0,
        "tex": float(u(0.05, 0.12)),
        "hole": 0.3,
        "nucl": 0.0,
        "nucl_tex": 0.0,
        "rim": 0.0,
        "dots": 0.0,
        "threads": -0.5,
        "chrom": float(u(0.03, 0.08)),
        "cyto": 1.0,
        "halo": float(u(0.02, 0.06)),
    }
    if pattern == "homogeneous":
        z.update(
            base=u(0.65, 0.8),
            tex=u(0.1, 0.2),
            hole=u(0.1, 0.3),
            rim=u(0.0, 0.08),
            threads=1.0,
            chrom=u(1.2, 1.6),
        )
    elif pattern == "fine_speckled":
        z.update(base=u(0.15, 0.25), hole=u(0.75, 0.9), threads=-0.7, cyto=1.4, halo=u(0.1, 0.2))
    elif pattern == "coarse_speckled":
        z.update(base=u(0.1, 0.2), hole=0.85, threads=-0.6, cyto=1.3, halo=u(0.08, 0.16))
    elif pattern == "centromere":
        z.update(base=u(0.05, 0.1), dots=u(0.85, 1.0))
    elif pattern == "nucleolar":
        z.update(base=u(0.08, 0.16), hole=0.0, nucl=u(0.75, 0.95), halo=u(0.05, 0.12))
        z["nucl_tex"] = {"AC-8": 0.1, "AC-9": u(0.5, 0.8), "AC-10": 0.2}[subtype]
        if subtype == "AC-10":
            z.update(nucl=0.35, dots=u(0.8, 1.0))
    elif pattern == "nuclear_dots":
        z.update(base=u(0.07, 0.12), dots=u(0.8, 1.0), cyto=1.3)
    elif pattern == "nuclear_envelope":
        z.update(base=u(0.1, 0.16), hole=0.2, rim=u(0.75, 0.95) if subtype == "AC-11" else 0.25)
        z["halo"] = u(0.12, 0.22)
    else:  # negative: faint, featureless autofluorescence
        z.update(base=1.0, hole=0.15, threads=0.5, chrom=1.0, cyto=0.5, halo=0.1)
    return {k: float(v) for k, v in z.items()}


def _speckles(
    rng: np.random.Generator, n: float, sigma: float, amp: float, lo: float, where: str, inner: float = 0.0
) -> dict[str, Any]:
    """Dense speckles drawn from a seed: ``n`` granules of ``sigma`` µm, amplitudes ``amp * U(lo, 1)``.

    ``where``: ``nucleus``, ``nucleoli``, ``rim`` (radius fractions ``inner``..0.97) or ``body``.
    """
    return {
        "n": int(n),
        "sigma": float(sigma),
        "amp": float(amp),
        "lo": float(lo),
        "where": where,
        "inner": float(inner),
        "seed": int(rng.integers(2**31)),
    }


def _dots(points: np.ndarray, amp: Any, sigma: Any, where: str) -> dict[str, Any]:
    n = len(points)
    return {
        "points": np.asarray(points, float).reshape(-1, 2).tolist(),
        "amp": np.broadcast_to(np.asarray(amp, float), (n,)).tolist(),
        "sigma": np.broadcast_to(np.asarray(sigma, float), (n,)).tolist(),
        "where": where,
    }


def _nucleoli(
    rng: np.random.Generator, shape: dict[str, Any], n: int, big: bool, s: float
) -> list[dict[str, Any]]:
    """``n`` irregular, separate nucleoli inside the inner part of the nucleus (cell frame).

    Radii scale with the nucleus and shrink while a nucleolus finds no free place, so they stay apart.
    """
    out: list[dict[str, Any]] = []
    size = np.sqrt(shape["radius"] ** 2 * shape["aspect"])
    for _ in range(n):
        r = float(size * (rng.uniform(0.11, 0.2) if big else rng.uniform(0.08, 0.15)))
        for attempt in range(80):
            c = _shape_points(rng, shape, 1, 0.0, 0.6)[0]
            if all(np.hypot(*(c - np.asarray(o["center"]))) > 1.25 * (r + o["radius"]) + 0.3 for o in out):
                break
            if attempt % 10 == 9:
                r *= 0.85
        out.append(
            {
                "center": c.tolist(),
                "radius": r,
                "aspect": float(rng.uniform(0.6, 1.0)),
                "angle": float(rng.uniform(0, 2 * np.pi)),
                "harmonics": _outline(rng, rng.uniform(0.08, 0.2), 4),
            }
        )
    return out


def _on_plate(chains: list[dict[str, Any]], n_plates: int, rng: np.random.Generator, m: int) -> np.ndarray:
    """``m`` points on the metaphase / anaphase plates (poleward side in anaphase)."""
    out = []
    for _ in range(m):
        j = int(rng.integers(n_plates))
        pts, radii = np.asarray(chains[j]["points"]), np.asarray(chains[j]["radii"])
        t = rng.uniform(0.3, len(pts) - 1.3)
        i = min(int(t), len(pts) - 2)
        p = pts[i] + (t - i) * (pts[i + 1] - pts[i])
        h = radii[i] + (t - i) * (radii[i + 1] - radii[i])
        if n_plates == 1:
            off = np.clip(rng.normal(0.0, 0.6), -1.1, 1.1) * h
        else:
            off = np.sign(np.mean(pts[:, 1])) * rng.uniform(0.0, 0.9) * h
        out.append(p + np.array([0.0, off]))
    return np.array(out, float).reshape(-1, 2)


def _decorate(rng: np.random.Generator, cell: Cell, serum: dict[str, Any], style: dict[str, float]) -> Cell:
    """Add cytoplasm, nucleoli, dots, speckles and brightness to a placed cell."""
    pattern, subtype, phase = serum["pattern"], serum["subtype"], cell["phase"]
    s = serum["scale"]
    shape = cell["nucleus"]
    lv = _levels(pattern, subtype, rng)
    cell["gain"] = float(serum["gain"] * np.exp(rng.normal(0.0, 0.18)))
    cell["levels"] = lv
    cell["cyto_level"] = float(style["cyto_level"] * rng.uniform(0.8, 1.2))
    cell["body"], big = _body(rng, shape, phase, s)
    n_nucleoli = 0
    if phase == "interphase" and pattern != "centromere":
        n_nucleoli = int(rng.integers(2, 7)) if pattern == "nucleolar" else int(rng.integers(1, 5))
    cell["nucleoli"] = _nucleoli(rng, shape, n_nucleoli, pattern == "nucleolar", s)
    cell["speckles"], cell["dots"] = _marks(rng, cell, serum, big)
    return cell


def _body(
    rng: np.random.Generator, shape: dict[str, Any], phase: str, s: float
) -> tuple[dict[str, Any], Any]:
    """The cell body (cytoplasm) around nucleus ``shape`` and its radius as drawn (µm)."""
    if phase == "interphase":
        big = _reach(shape) * rng.uniform(1.35, 1.9)
        body = {
            "radius": float(big),
            "aspect": float(rng.uniform(0.4, 0.8)),
            "harmonics": _outline(rng, rng.uniform(0.08, 0.16), 6),
            "offset": [
                float(rng.uniform(-0.35, 0.35) * (big - shape["radius"])),
                float(rng.normal(0.0, 0.15) * shape["radius"]),
            ],
            "angle": float(rng.normal(0.0, 0.25)),
        }
    else:
        big = max(shape["radius"] + rng.uniform(1.5, 3.0), rng.uniform(7.5, 9.5) * s)
        body = {
            "radius": float(big),
            "aspect": float(rng.uniform(0.88, 1.0)),
            "harmonics": _outline(rng, 0.03, 4),
            "offset": [0.0, 0.0],
            "angle": 0.0,
        }
    return body, big


def _nucleus_points(shape: dict[str, Any], g: np.random.Generator, m: int) -> np.ndarray:
    """``m`` points in the inner 84 % of the nucleus (a :func:`_spaced` sampler once ``shape`` is bound)."""
    return _shape_points(g, shape, m, 0.0, 0.84)


def _marks(
    rng: np.random.Generator, cell: Cell, serum: dict[str, Any], big: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The pattern's speckles and dots of a cell whose body has radius ``big`` (none for other patterns)."""
    pattern, subtype, phase = serum["pattern"], serum["subtype"], cell["phase"]
    s, sp = serum["scale"], serum["speckle"]
    shape, chains = cell["nucleus"], cell["chains"]
    area = np.pi * shape["radius"] ** 2 * shape["aspect"]
    speckles: list[dict[str, Any]] = []
    dots = _dots(np.zeros((0, 2)), 1.0, 0.3, "nucleus")
    plate = phase in ("metaphase", "anaphase")
    n_plates = 2 if phase == "anaphase" else 1
    if pattern in ("fine_speckled", "coarse_speckled") or (pattern == "homogeneous" and not plate):
        speckles = _speckled(rng, pattern, plate, area, big, sp)
    elif pattern == "centromere":
        n = int(rng.integers(40, 81))
        if plate:
            pts = _spaced(rng, partial(_on_plate, chains, n_plates), n, 0.4 * s)
        else:
            pts = _spaced(rng, partial(_nucleus_points, shape), n, 0.55 * np.sqrt(area * 0.7 / n))
        dots = _dots(
            pts, rng.uniform(0.85, 1.0, n), serum["dot_sigma"] * s * (0.85 if plate else 1.0), "nucleus"
        )
    elif pattern == "nucleolar" and subtype == "AC-10":
        if plate:
            n = int(rng.integers(2, 7))
            pts = _spaced(rng, partial(_on_plate, chains, n_plates), n, 1.0 * s)
            dots = _dots(pts, rng.uniform(0.7, 1.0, n), rng.uniform(0.28, 0.38) * s, "nucleus")
        else:
            nl_area = sum(np.pi * o["radius"] ** 2 * o["aspect"] for o in cell["nucleoli"])
            speckles.append(_speckles(rng, nl_area * rng.uniform(5.0, 8.0), 0.2 * sp, 0.75, 0.3, "nucleoli"))
    elif pattern == "nuclear_dots":
        dots = _nuclear_dots(rng, cell, subtype, plate, s)
    elif pattern == "nuclear_envelope" and subtype == "AC-12" and not plate:
        perimeter = np.pi * shape["radius"] * (1.0 + shape["aspect"])
        speckles.append(_speckles(rng, perimeter * rng.uniform(2.0, 3.0), 0.2 * sp, 0.8, 0.5, "rim", 0.86))
    return speckles, dots


def _speckled(
    rng: np.random.Generator, pattern: str, plate: bool, area: Any, big: Any, sp: float
) -> list[dict[str, Any]]:
    """Speckles of the fine / coarse speckled patterns and the fine granularity of homogeneous nuclei."""
    speckles = []
    if pattern == "fine_speckled":
        where = "body" if plate else "nucleus"
        n = area * rng.uniform(4.0, 7.0) if not plate else np.pi * big**2 * rng.uniform(1.0, 2.0)
        speckles.append(_speckles(rng, n, 0.17 * sp, 0.6 if not plate else 0.4, 0.2, where))
        speckles.append(_speckles(rng, np.pi * big**2 * 0.3, 0.2 * sp, 0.2, 0.2, "body"))
    elif pattern == "coarse_speckled":
        where = "body" if plate else "nucleus"
        n = area * rng.uniform(0.4, 0.7) if not plate else np.pi * big**2 * rng.uniform(0.12, 0.25)
        speckles.append(_speckles(rng, n, 0.36 * sp, 0.85 if not plate else 0.5, 0.3, where))
        speckles.append(_speckles(rng, np.pi * big**2 * 0.06, 0.32 * sp, 0.2, 0.3, "body"))
    else:  # homogeneous interphase: the fine granularity of real AC-1 nuclei
        speckles.append(_speckles(rng, area * rng.uniform(5.0, 8.0), 0.15 * sp, 0.25, 0.2, "nucleus"))
    return speckles


def _nuclear_dots(
    rng: np.random.Generator, cell: Cell, subtype: str, plate: bool, s: float
) -> dict[str, Any]:
    """AC-7 (3-5) or AC-6 (6-20) nuclear dots; in a mitosis scattered over the cell body around the plate."""
    n = int(rng.integers(3, 6)) if subtype == "AC-7" else int(rng.integers(6, 21))
    sig = np.round(rng.uniform(0.22, 0.55, n) * s / 0.05) * 0.05
    if plate:
        r_in, r_out = cell["nucleus"]["radius"] / cell["body"]["radius"], 0.9
        body = {"radius": cell["body"]["radius"], "aspect": 1.0, "harmonics": []}
        pts = _spaced(rng, lambda g, m: _shape_points(g, body, m, r_in, r_out), n, 1.0 * s)
        return _dots(pts, rng.uniform(0.45, 0.75, n), sig, "cell")
    pts = _spaced(rng, partial(_nucleus_points, cell["nucleus"]), n, 1.1 * s)
    return _dots(pts, rng.uniform(0.6, 1.0, n), sig, "nucleus")


def _new_cell(rng: np.random.Generator, serum: dict[str, Any], phase: str, center: Any, angle: float) -> Cell:
    shape, chains = _footprint(rng, serum, phase)
    return {
        "center": [float(center[0]), float(center[1])],
        "angle": float(angle),
        "phase": phase,
        "pattern": serum["pattern"],
        "nucleus": shape,
        "chains": chains,
    }


def _phase(rng: np.random.Generator, p_mitotic: float) -> str:
    if rng.random() >= p_mitotic:
        return "interphase"
    return str(rng.choice(_PHASES, p=_PHASE_P))


def _optics(rng: np.random.Generator, style: dict[str, float]) -> dict[str, Any]:
    return {
        "background": float(style["background"] * rng.uniform(0.85, 1.15)),
        "unevenness": float(style["unevenness"] * rng.uniform(0.7, 1.3)),
        "red_leak": style["red_leak"],
        "blue_leak": style["blue_leak"],
        "glow": float(style["glow"] * rng.uniform(0.8, 1.2)),
        "blur_um": float(style["focus_blur_um"] + abs(rng.normal(0.0, 0.05))),
        "noise_read": float(style["noise_level"] * rng.uniform(0.8, 1.25)),
        "noise_shot": float(rng.uniform(0.001, 0.004)),
        "tex_seed": int(rng.integers(2**31)),
        "noise_seed": int(rng.integers(2**31)),
    }


# ==================================================================================================
# parameters: single-cell crops and whole fields
# ==================================================================================================


def sample_params(label: str, rng: np.random.Generator, style: dict[str, float]) -> dict[str, Any]:
    """Every random quantity of one single-cell crop; :func:`draw` renders it deterministically."""
    if label not in CLASSES:
        raise UnknownNameError(f"unknown ANA pattern {label!r}; expected one of {CLASSES}")
    field_um = CROP_UM / (style["magnification"] * rng.uniform(0.97, 1.03))
    serum = _serum(label, rng, style)
    offset = np.clip(rng.normal(0.0, 0.6, 2), -1.5, 1.5)
    target = _new_cell(rng, serum, _phase(rng, MITOTIC_SHARE_CROPS), offset, rng.uniform(0, 2 * np.pi))
    cells = [target]
    half = field_um / 2
    for _ in range(int(rng.choice([0, 1, 2, 3], p=[0.2, 0.35, 0.3, 0.15]))):
        for _try in range(25):
            side, along = int(rng.integers(4)), rng.uniform(-half, half)
            cand = _new_cell(rng, serum, _phase(rng, 0.05), (0.0, 0.0), rng.uniform(0, 2 * np.pi))
            across = half + rng.uniform(-0.3, 0.5) * cand["nucleus"]["radius"]
            pos = [across, along] if side < 2 else [along, across]
            cand["center"] = [float(pos[0] * (-1) ** side), float(pos[1] * (-1) ** side)]
            if not any(_clash(cand, c, 0.6) for c in cells):
                cells.append(cand)
                break
    for cell in cells:
        _decorate(rng, cell, serum, style)
    return {
        "label": label,
        "subtype": serum["subtype"],
        "titer": serum["titer"],
        "field_um": float(field_um),
        "cells": cells,
        **_optics(rng, style),
    }


def sample_field(label: str, rng: np.random.Generator, style: dict[str, float]) -> dict[str, Any]:
    """Every random quantity of one whole field: a HEp-2 monolayer of 30-80 cells, 2-8 % mitotic."""
    if label not in FIELD_CLASSES:
        raise UnknownNameError(f"unknown ANA field class {label!r}; expected one of {FIELD_CLASSES}")
    serum = _serum(label, rng, style)
    field_um, cells = _monolayer(rng, serum, style)
    for cell in cells:
        _decorate(rng, cell, serum, style)
    return {
        "label": label,
        "subtype": serum["subtype"],
        "titer": serum["titer"],
        "field_um": field_um,
        "cells": cells,
        **_optics(rng, style),
    }


def _monolayer(
    rng: np.random.Generator,
    serum: dict[str, Any],
    style: dict[str, float],
    spread: float = 1.0,
    gap_um: float = 0.0,
) -> tuple[float, list[Cell]]:
    """Field side (µm) and 30-80 placed, undecorated cells (2-8 % mitotic) whose nuclei never overlap.

    ``spread`` scales the field area per cell; nuclear footprints stay ``gap_um`` further apart
    (room for cytoplasm between neighbours).
    """
    n_target = int(rng.integers(30, 81))
    field_um = float(np.sqrt(n_target * rng.uniform(380.0, 560.0) * spread) * style["nucleus_scale"])
    n_mitotic = int(
        np.clip(round(rng.uniform(0.02, 0.08) * n_target), np.ceil(0.02 * n_target), 0.08 * n_target)
    )
    # cells in a monolayer align in streams: a smooth orientation field plus per-cell jitter
    theta0, swing = rng.uniform(0, np.pi), rng.uniform(0.0, 1.2)
    k_dir, wavelength, k_phase = (
        rng.uniform(0, 2 * np.pi),
        rng.uniform(60.0, 220.0),
        rng.uniform(0, 2 * np.pi),
    )
    kvec = 2 * np.pi / wavelength * np.array([np.cos(k_dir), np.sin(k_dir)])
    margin, clumping = float(rng.uniform(0.3, 0.9)), float(rng.uniform(0.3, 0.85))
    margin += gap_um
    clash = _clash if gap_um <= 0 else _clash_wide
    half = field_um / 2 - 0.3
    cells: list[Cell] = []
    centres, reaches = np.zeros((n_target, 2)), np.zeros(n_target)
    for i in range(n_target):
        phase = str(rng.choice(_PHASES, p=_PHASE_P)) if i < n_mitotic else "interphase"
        cell = _new_cell(rng, serum, phase, (0.0, 0.0), 0.0)
        reach = _reach(cell["nucleus"])
        for _try in range(150):
            pos = rng.uniform(-half, half, 2)
            if cells and rng.random() < clumping:  # cells grow in islands: settle next to a placed one
                host = int(rng.integers(len(cells)))
                dist = (reaches[host] + reach + gap_um) * rng.uniform(0.8, 1.6)
                ang = rng.uniform(0, 2 * np.pi)
                pos = np.clip(centres[host] + dist * np.array([np.cos(ang), np.sin(ang)]), -half, half)
            cell["center"] = pos.tolist()
            cell["angle"] = float(theta0 + swing * np.sin(kvec @ pos + k_phase) + rng.normal(0.0, 0.35))
            k = len(cells)
            near = np.hypot(*(centres[:k] - pos).T) < reaches[:k] + reach + margin
            if not any(clash(cell, cells[j], margin) for j in np.flatnonzero(near)):
                centres[k], reaches[k] = pos, reach
                cells.append(cell)
                break
    return field_um, cells


# ==================================================================================================
# drawing
# ==================================================================================================


def _cell_to_field(points: Any, cell: Cell) -> np.ndarray:
    return _rotate(points, cell["angle"]) + np.asarray(cell["center"], float)


def _body_to_cell(points: Any, body: dict[str, Any]) -> np.ndarray:
    return _rotate(points, body["angle"]) + np.asarray(body["offset"], float)


def _speckle_points(cell: Cell, sp: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Seeded speckle positions (cell frame, µm) and amplitudes."""
    g = np.random.default_rng(sp["seed"])
    n, where = sp["n"], sp["where"]
    if where == "nucleus":
        pts = _shape_points(g, cell["nucleus"], n, 0.0, 0.97)
    elif where == "rim":
        pts = _shape_points(g, cell["nucleus"], n, sp["inner"], 0.97)
    elif where == "body":
        pts = _body_to_cell(_shape_points(g, cell["body"], n, 0.0, 0.95), cell["body"])
    else:  # nucleoli
        areas = np.array([o["radius"] ** 2 * o["aspect"] for o in cell["nucleoli"]])
        parts = []
        for o, m in zip(
            cell["nucleoli"], np.round(n * areas / max(areas.sum(), 1e-9)).astype(int), strict=True
        ):
            parts.append(
                _rotate(_shape_points(g, o, int(m), 0.0, 0.95), o["angle"]) + np.asarray(o["center"])
            )
        pts = np.concatenate(parts) if parts else np.zeros((0, 2))
    return pts, g.uniform(sp["lo"] * sp["amp"], sp["amp"], len(pts))


def _granules(shape: tuple[int, int], pts: np.ndarray, amp: Any, sigma_px: float) -> np.ndarray:
    """:func:`granule_field` that keeps each granule's total light when its sigma is below the 0.5 px floor.

    Small outputs then show sub-pixel speckles as dimmer pixels instead of brighter nuclei, so brightness
    does not depend on the output size.
    """
    flux = min(float(sigma_px) / 0.5, 1.0) ** 2
    return d.granule_field(shape, pts, np.asarray(amp, np.float32) * flux, max(float(sigma_px), 0.5))


def _spots(shape: tuple[int, int], pts: np.ndarray, amp: np.ndarray, sigma_px: np.ndarray) -> np.ndarray:
    """Gaussian spots of a few distinct sizes (one :func:`_granules` call per size)."""
    out = np.zeros(shape, np.float32)
    for s in np.unique(sigma_px):
        keep = sigma_px == s
        out += _granules(shape, pts[keep], amp[keep], float(s))
    return out


@dataclass(frozen=True)
class _CellWindow:
    """Where one cell is drawn: the cell, the field frame, its canvas slices, their shape and top-left pixel."""

    cell: Cell
    fr: d.Frame
    win: tuple[slice, slice]
    local: tuple[int, int]
    origin: np.ndarray
    soft: float  # edge softness of nuclear masks, pixels


def _cell_window(cell: Cell, fr: d.Frame, body_soft: float) -> _CellWindow | None:
    """The window holding the cell's nucleus and body with their soft edges; None when it misses the field."""
    ppu, size = fr.ppu, fr.size
    body, shape = cell["body"], cell["nucleus"]
    soft = max(0.6, 0.12 * ppu)
    reach = max(_reach(shape), float(np.hypot(*body["offset"])) + _reach(body)) * ppu + 2 * body_soft + 4
    cx, cy = fr.xy(cell["center"])
    c0, c1 = max(int(cx - reach), 0), min(int(cx + reach) + 1, size)
    r0, r1 = max(int(cy - reach), 0), min(int(cy + reach) + 1, size)
    if c0 >= c1 or r0 >= r1:
        return None
    win = (slice(r0, r1), slice(c0, c1))
    return _CellWindow(cell, fr, win, (r1 - r0, c1 - c0), np.array([c0, r0], float), soft)


def _px(w: _CellWindow, points: Any) -> np.ndarray:
    """Cell-frame points (µm) as pixel positions in the cell's window."""
    return w.fr.xy(_cell_to_field(points, w.cell)) - w.origin


def _blob(
    w: _CellWindow, spec: dict[str, Any], centre: Any, angle: float, softness: float, shrink: float = 0.0
) -> np.ndarray:
    """Soft mask of the perturbed ellipse ``spec`` (radius in µm, less ``shrink``) in the cell's window."""
    return d.polar_blob(
        w.local,
        centre,
        max(spec["radius"] - shrink, 0.1) * w.fr.ppu,
        aspect=spec["aspect"],
        angle=angle,
        harmonics=spec["harmonics"],
        softness=softness,
    )


def _nucleus_mask(w: _CellWindow, centre_px: np.ndarray) -> np.ndarray:
    """Soft nuclear mask: the chromosome plates of a metaphase / anaphase, else the nucleus outline."""
    cell, ppu = w.cell, w.fr.ppu
    if cell["chains"]:
        return d.union(
            *[
                d.capsule_chain(w.local, _px(w, c["points"]), np.asarray(c["radii"]) * ppu, softness=w.soft)
                for c in cell["chains"]
            ]
        )
    return _blob(w, cell["nucleus"], centre_px, cell["angle"], w.soft)


def _speckle_fields(w: _CellWindow) -> dict[str, np.ndarray]:
    """The cell's speckles rendered per compartment (``nucleus``, ``rim``, ``body``, ``nucleoli``)."""
    fields = {k: np.zeros(w.local, np.float32) for k in ("nucleus", "rim", "body", "nucleoli")}
    for sp in w.cell["speckles"]:
        pts, amp = _speckle_points(w.cell, sp)
        fields[sp["where"]] += _granules(w.local, _px(w, pts), amp, sp["sigma"] * w.fr.ppu)
    return fields


def _condensation(w: _CellWindow, tex: dict[str, np.ndarray]) -> Any:
    """Chromatin condensation factor: prophase threads brighten or darken the nucleoplasm."""
    cell, lv = w.cell, w.cell["levels"]
    thr = np.zeros(w.local, np.float32)
    if cell["phase"] == "prophase":
        thr = np.clip(1.0 - np.abs(tex["thread"][w.win]) / 0.45, 0.0, 1.0) ** 1.5
    k = lv["threads"]
    if cell["phase"] == "prophase" and k > 0:
        return lv["chrom"] * ((1.0 - 0.6 * k) + 1.3 * k * thr)
    return 1.0 + k * thr if k < 0 else np.ones(w.local, np.float32)


def _nucleus_signal(
    w: _CellWindow,
    tex: dict[str, np.ndarray],
    nuc: np.ndarray,
    nucleoli: np.ndarray,
    fields: dict[str, np.ndarray],
    centre_px: np.ndarray,
) -> np.ndarray:
    """Nuclear stain before the cell's gain and its dots (a mitosis: the condensed chromatin)."""
    cell, lv = w.cell, w.cell["levels"]
    t_fine = tex["fine"][w.win]
    if cell["chains"]:
        return nuc * lv["chrom"] * (0.8 + 0.3 * t_fine)
    cond = _condensation(w, tex)
    holes = 1.0 - lv["hole"] * nucleoli
    signal = lv["base"] * (1.0 + lv["tex"] * t_fine) * holes * cond
    signal += fields["nucleus"] * (1.0 - nucleoli) * cond + fields["rim"] + fields["nucleoli"] * nucleoli
    signal += lv["nucl"] * nucleoli * np.maximum(1.0 + lv["nucl_tex"] * 1.6 * t_fine, 0.1)
    if lv["rim"] > 0:
        rim = np.clip(
            nuc - _blob(w, cell["nucleus"], centre_px, cell["angle"], w.soft, shrink=0.55), 0.0, 1.0
        )
        signal += lv["rim"] * rim * (1.0 + 0.15 * t_fine)
    return nuc * signal


def _render_cell(
    cell: Cell, fr: d.Frame, tex: dict[str, np.ndarray], canvas: dict[str, np.ndarray]
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Draw one cell into the cytoplasm / nucleus / occupancy canvases; return its window and nuclear mask."""
    ppu = fr.ppu
    body, lv = cell["body"], cell["levels"]
    body_soft = max(1.0, 1.2 * ppu)
    w = _cell_window(cell, fr, body_soft)
    if w is None:
        return None
    win, local = w.win, w.local
    centre_px = _px(w, [0.0, 0.0])[0]
    body_mask = _blob(w, body, _px(w, body["offset"])[0], cell["angle"] + body["angle"], body_soft)
    nuc = _nucleus_mask(w, centre_px)
    t_fine, t_cyto = tex["fine"][win], tex["cyto"][win]
    nucleoli = np.zeros(local, np.float32)
    for o in cell["nucleoli"]:
        nucleoli = np.maximum(
            nucleoli, _blob(w, o, _px(w, o["center"])[0], cell["angle"] + o["angle"], w.soft)
        )
    fields = _speckle_fields(w)
    dots = cell["dots"]
    dot_field = _spots(
        local, _px(w, dots["points"]), np.asarray(dots["amp"]), np.asarray(dots["sigma"]) * ppu
    )
    dot_field *= lv["dots"]
    g = cell["gain"]
    signal = _nucleus_signal(w, tex, nuc, nucleoli, fields, centre_px)
    nuc_signal = g * (np.maximum(signal, 0.0) + (dot_field if dots["where"] == "nucleus" else 0.0))
    halo = lv["halo"] * (1.0 + lv["tex"] * t_fine) if cell["phase"] != "interphase" else 0.0
    cyto = body_mask * (cell["cyto_level"] * lv["cyto"] * (1.0 + 0.3 * t_cyto) + halo + fields["body"])
    if dots["where"] == "cell":
        cyto = cyto + dot_field
    canvas["cyto"][win] = np.maximum(canvas["cyto"][win], g * np.maximum(cyto, 0.0))
    canvas["nuc"][win] += nuc_signal
    canvas["occ"][win] = np.maximum(canvas["occ"][win], nuc)
    return win, nuc


def _render(params: dict[str, Any], size: int, want_masks: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    shape = (size, size)
    fr = d.Frame(size, params["field_um"])
    tex = _textures(params, fr)
    canvas = {k: np.zeros(shape, np.float32) for k in ("cyto", "nuc", "occ")}
    masks: list[np.ndarray] = []
    claimed = np.zeros(shape, bool)
    for cell in params["cells"]:
        res = _render_cell(cell, fr, tex, canvas)
        if not want_masks:
            continue
        mask = np.zeros(shape, bool)
        if res is not None:
            mask[res[0]] = res[1] >= 0.5
        mask &= ~claimed
        cx, cy = np.clip(np.rint(fr.xy(cell["center"])), 0, size - 1).astype(int)
        if not mask.any() and not claimed[cy, cx]:
            mask[cy, cx] = True  # tiny output: keep one pixel so the object still has a box
        claimed |= mask
        masks.append(mask)
    signal = canvas["cyto"] * (1.0 - canvas["occ"]) + canvas["nuc"]
    return _camera(signal, params, fr), masks


def _tex_seed(params: dict[str, Any], size: int) -> int:
    return params["tex_seed"] + size * 7_919  # textures are resampled per output size; geometry is not


def _textures(params: dict[str, Any], fr: d.Frame) -> dict[str, np.ndarray]:
    """Seeded noise fields shared by all cells: ``fine`` (chromatin), ``thread`` and ``cyto``."""
    shape, ppu, seed = (fr.size, fr.size), fr.ppu, _tex_seed(params, fr.size)
    return {
        "fine": d.smooth_noise(shape, max(0.35 * ppu, 1.0), seed),
        "thread": d.smooth_noise(shape, max(0.6 * ppu, 1.0), seed + 1, octaves=2),
        "cyto": d.smooth_noise(shape, max(1.5 * ppu, 1.0), seed + 2, octaves=2),
    }


def _camera(signal: np.ndarray, params: dict[str, Any], fr: d.Frame) -> np.ndarray:
    """Optics and sensor for a FITC signal map: glow, uneven light, channel leak, defocus, noise -> uint8."""
    size, ppu = fr.size, fr.ppu
    shape, seed = signal.shape, _tex_seed(params, size)
    if params["glow"] > 0:
        signal = signal + params["glow"] * d.defocus(signal, 1.5 * ppu)
    light = 1.0 + params["unevenness"] * d.smooth_noise(shape, size / 2.0, seed + 3)
    green = (signal + params["background"]) * light
    # camera: a little green leaks into red / blue, a little more near saturation, none beyond it
    seen = np.minimum(green, 1.2)
    knee = 0.1 * np.clip(green - 0.85, 0.0, 0.35)
    img = np.stack(
        [params["red_leak"] * seen + knee, green, params["blue_leak"] * seen + 0.3 * knee], axis=-1
    )
    img = d.defocus(img, d.total_blur(params["blur_um"] * ppu, params, size))
    img = d.sensor_noise(
        img, params["noise_seed"] + size, read=params["noise_read"], shot=params["noise_shot"]
    )
    return d.to_uint8(img)


def draw(params: dict[str, Any], size: int = 128) -> np.ndarray:
    """Render a single-cell parameter dict from :func:`sample_params` as ``uint8`` RGB ``size`` x ``size``."""
    return _render(params, size, want_masks=False)[0]


def draw_field(params: dict[str, Any], size: int = 512) -> tuple[np.ndarray, list[Instance]]:
    """Render a field from :func:`sample_field`; one :class:`Instance` per nucleus (mask = soft mask >= 0.5)."""
    img, masks = _render(params, size, want_masks=True)
    fr = d.Frame(size, params["field_um"])
    instances = []
    for cell, mask in zip(params["cells"], masks, strict=True):
        x, y = fr.xy(cell["center"])
        instances.append(
            Instance(
                label="interphase" if cell["phase"] == "interphase" else "mitotic",
                mask=mask,
                center=(float(x), float(y)),
                may_overlap=False,
                attrs=_cell_attrs(cell, params["label"]),
            )
        )
    return img, instances


# ==================================================================================================
# truth
# ==================================================================================================


def _cell_attrs(cell: Cell, pattern: str) -> dict[str, Any]:
    return {
        "pattern": pattern,
        "phase": cell["phase"],
        "intensity": round(cell["gain"], 4),
        "n_dots": len(cell["dots"]["points"]),
        "n_nucleoli": len(cell["nucleoli"]),
    }


def truth(params: dict[str, Any], size: int) -> dict[str, Any]:
    """Per-crop truth: ICAP sub-code, the target cell's phase and counts, titer, optics.

    ``n_dots`` counts the discrete bright dots drawn for the target: centromeres (40-80), nuclear dots
    (3-20) or AC-10 NOR dots in mitosis (2-6); ``n_nucleoli`` the nucleoli of an interphase nucleus
    (bright in ``nucleolar``, 2-6; unstained or faint otherwise; none in mitosis or in ``centromere``).
    """
    cell = params["cells"][0]
    fr = d.Frame(size, params["field_um"])
    shape = cell["nucleus"]
    return {
        "subtype": params["subtype"],
        "phase": cell["phase"],
        "mitotic": int(cell["phase"] != "interphase"),
        "n_dots": len(cell["dots"]["points"]),
        "n_nucleoli": len(cell["nucleoli"]),
        "titer": params["titer"],
        "intensity": round(cell["gain"], 4),
        "blur_sigma": round(params["blur_um"] * fr.ppu, 4),
        "field_um": round(params["field_um"], 3),
        "nucleus_um": round(float(2 * shape["radius"] * np.sqrt(shape["aspect"])), 3),
        "n_neighbour_cells": len(params["cells"]) - 1,
        "rotation_deg": round(float(np.degrees(cell["angle"])) % 360.0, 2),
        "offset_x_um": round(cell["center"][0], 3),
        "offset_y_um": round(cell["center"][1], 3),
    }


def field_truth(params: dict[str, Any], size: int) -> dict[str, Any]:
    """Per-field truth: cell and mitosis counts, titer (0 for negative), mean brightness, optics."""
    cells = params["cells"]
    fr = d.Frame(size, params["field_um"])
    return {
        "subtype": params["subtype"],
        "n_cells": len(cells),
        "n_mitotic": sum(c["phase"] != "interphase" for c in cells),
        "titer": params["titer"],
        "intensity": round(float(np.mean([c["gain"] for c in cells])), 4),
        "blur_sigma": round(params["blur_um"] * fr.ppu, 4),
        "field_um": round(params["field_um"], 3),
    }


FIELDS = PhantomFields(
    classes=FIELD_CLASSES,
    instance_classes=INSTANCE_CLASSES,
    sampler=sample_field,
    drawer=draw_field,
    truth_fn=field_truth,
    default_size=512,
    one_label_per_group=True,
)

TASK = Phantom(
    name="ana-hep2",
    classes=CLASSES,
    description="ANA indirect immunofluorescence on HEp-2 cells, 7 ICAP nuclear patterns (ICPR-like cell crops)",
    style_sampler=sample_style,
    param_sampler=sample_params,
    drawer=draw,
    truth_fn=truth,
    one_label_per_group=True,
    default_size=128,
    fields=FIELDS,
)
