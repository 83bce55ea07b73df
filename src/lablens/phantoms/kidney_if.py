"""Synthetic kidney-biopsy direct immunofluorescence phantoms: one glomerulus per image, five patterns.

Each image is a crop of a frozen-section renal biopsy stained with a FITC-conjugated antibody (IgG,
IgA or C3) and seen on a fluorescence microscope: green signal on a dark background. It is centred on
one glomerulus: a lobulated tuft of capillary loops (ring-shaped capillary walls = glomerular basement
membrane, GBM) held together by a branching mesangial stalk that enters at the vascular pole, inside
Bowman's capsule, with a rim of tubulointerstitium (tubule cross-sections with their tubular basement
membrane, TBM, and granular epithelial autofluorescence) around it. The classes follow the deposit
patterns of the IF atlases (and of the DeepMT-ND / IFVB glomerular IF studies):

* ``iga_mesangial`` — IgA nephropathy: coarse granular / globular deposits along the mesangial
  stalks, a bright branching "tree" in the centre of the tuft; capillary walls mostly spared;
* ``membranous`` — membranous nephropathy: fine, evenly spaced granular deposits on the outer
  (subepithelial) side of every peripheral capillary wall, a garland of dots outlining the loops;
* ``anti_gbm`` — anti-GBM disease: smooth, continuous linear staining of the capillary basement
  membranes (no granules), sometimes of Bowman's capsule and of the TBM too;
* ``lupus_full_house`` — lupus nephritis: strong mixed mesangial and coarse capillary-wall granular
  deposits (segmental "wire loops"), plus granular TBM and extraglomerular deposits;
* ``negative`` — no specific deposits: only faint autofluorescence of the tuft, capsule and tubules.

Rendering has two strictly separated steps so that a parameter dict replays to the same pixels:
:func:`sample_params` draws every random quantity (geometry in µm, deposit positions, levels, seeds)
given the class and the per-group ``style`` from :func:`sample_style` (a synthetic biopsy: antibody
lot, exposure, autofluorescence, focus, glomerular size); :func:`draw` renders it at any size with
the deterministic primitives of :mod:`lablens.phantoms.draw`.

Brightness is deliberately a weak cue: the camera auto-exposes every image (a group-dependent share
of the gain follows the brightest structures), the specific stain intensity overlaps between the
positive classes (1+ to 3+), the negative class keeps its tubular autofluorescence and a faint
non-specific mesangial smudge, and bright class-independent distractors appear in any class: protein
casts and reabsorption droplets in tubules (they bind the conjugate non-specifically) and the
autofluorescent elastic lamina of an arteriole. A classifier has to read where the glomerular signal
lies (stalks, loop walls, tubular basement membranes) and its texture (globular, fine granular,
linear). These are small structures (a few µm), so the classes
stay distinct when sharp and converge under the ``--blur`` levels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

from lablens.errors import UnknownNameError
from lablens.phantoms import draw as d
from lablens.phantoms.contract import Phantom

CLASSES: tuple[str, ...] = ("anti_gbm", "iga_mesangial", "lupus_full_house", "membranous", "negative")

FITC_RGB = (0.34, 1.0, 0.22)  # emission colour of FITC as a typical colour camera renders it
AUTOFLUOR_RGB = (0.62, 1.0, 0.26)  # lipofuscin-like tubular autofluorescence: a yellower green

# ==================================================================================================
# style (per group = one biopsy)
# ==================================================================================================


def sample_style(rng: np.random.Generator) -> dict[str, float]:
    """Sample a synthetic biopsy / antibody lot / microscope session.

    Returns:
        ``stain_gain`` (conjugate brightness), ``fitc_tint`` (-1 cyan-green .. +1 yellow-green),
        ``autofluorescence`` (tissue autofluorescence level), ``autofluor_yellow`` (how much yellower
        the autofluorescence is than FITC, 0..0.6), ``background`` (black level), ``exposure`` (gain),
        ``auto_exposure`` (0 fixed gain .. 1 gain fully set by the brightest structures),
        ``focus_blur_um`` (defocus sigma, µm), ``glom_diameter_um`` (mean glomerular tuft diameter),
        ``framing`` (field of view / tuft diameter), ``loop_radius_um`` (mean capillary lumen
        radius), ``noise_level`` (sensor read noise, 0..1 units), ``vignette``, ``vessel_chance``
        (probability of an arteriole, whose elastic lamina autofluoresces, in the field),
        ``cast_rate`` (mean share of tubules holding a non-specifically stained protein cast) and
        ``droplet_rate`` (mean share of tubules with stained protein reabsorption droplets).
    """
    return {
        "stain_gain": float(rng.uniform(0.65, 1.35)),
        "fitc_tint": float(rng.uniform(-1.0, 1.0)),
        "autofluorescence": float(rng.uniform(0.04, 0.2)),
        "autofluor_yellow": float(rng.uniform(0.0, 0.6)),
        "background": float(rng.uniform(0.008, 0.05)),
        "exposure": float(rng.uniform(0.8, 1.2)),
        "auto_exposure": float(rng.uniform(0.5, 0.95)),
        "focus_blur_um": float(rng.uniform(0.2, 0.9)),
        "glom_diameter_um": float(rng.uniform(120.0, 185.0)),
        "framing": float(rng.uniform(1.25, 1.75)),
        "loop_radius_um": float(rng.uniform(3.8, 5.4)),
        "noise_level": float(rng.uniform(0.006, 0.022)),
        "vignette": float(rng.uniform(0.0, 0.25)),
        "vessel_chance": float(rng.uniform(0.2, 0.7)),
        "cast_rate": float(rng.beta(0.7, 4.0) * 0.5),
        "droplet_rate": float(rng.beta(0.6, 2.0) * 0.1),
    }


# ==================================================================================================
# geometry helpers (µm, origin at the field centre; all take the rng explicitly)
# ==================================================================================================


def _outline(rng: np.random.Generator, wobble: float, kmax: int = 4) -> list[list[float]]:
    """Random Fourier harmonics ``(k, amp, phase)`` for k = 2..kmax, amplitude ~ wobble / sqrt(k)."""
    return [
        [float(k), float(rng.normal(0.0, wobble / np.sqrt(k))), float(rng.uniform(0, 2 * np.pi))]
        for k in range(2, kmax + 1)
    ]


def _unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def outline_points(blob: dict[str, Any], t: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """Points of a :func:`draw.polar_blob` outline (µm) at polar angles ``t`` of the blob's own frame.

    ``offset`` moves the points along the radius (outwards when positive), e.g. onto the outer face
    of a capillary wall. ``blob`` holds ``center``, ``radius``, ``aspect``, ``angle``, ``harmonics``.
    """
    t = np.asarray(t, float)
    mod = np.ones_like(t)
    for k, amp, phase in blob["harmonics"]:
        mod += amp * np.cos(k * t + phase)
    rho = blob["radius"] * mod + offset
    u, v = rho * np.cos(t), blob["aspect"] * rho * np.sin(t)
    ca, sa = np.cos(blob["angle"]), np.sin(blob["angle"])
    cx, cy = blob["center"]
    return np.column_stack([cx + u * ca - v * sa, cy + u * sa + v * ca])


def _segment_distance(points: np.ndarray, chains: list[dict[str, Any]]) -> np.ndarray:
    """Distance from each point to the nearest chain surface (centre-line distance minus radius)."""
    best = np.full(len(points), np.inf)
    for chain in chains:
        pts, rad = np.asarray(chain["points"], float), np.asarray(chain["radii"], float)
        for i in range(len(pts) - 1):
            a, b = pts[i], pts[i + 1]
            e = b - a
            t = np.clip(((points - a) @ e) / max(float(e @ e), 1e-9), 0.0, 1.0)
            dist = np.linalg.norm(points - a - t[:, None] * e, axis=1) - (rad[i] + t * (rad[i + 1] - rad[i]))
            best = np.minimum(best, dist)
    return best


def _lattice(rng: np.random.Generator, spacing: float, half: float, jitter: float) -> np.ndarray:
    """Jittered, randomly rotated and shifted hexagonal lattice covering ``[-half, half]^2``."""
    n = int(np.ceil(1.5 * half / spacing)) + 2
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1))
    pts = np.column_stack([(i + 0.5 * (j % 2)).ravel() * spacing, j.ravel() * spacing * np.sqrt(3) / 2])
    a = rng.uniform(0, np.pi)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = pts @ rot.T + rng.uniform(-spacing, spacing, 2)
    pts = pts + rng.normal(0.0, jitter * spacing, pts.shape)
    return pts[np.abs(pts).max(axis=1) <= half]


def _nearest(points: np.ndarray) -> np.ndarray:
    """Distance from each point to its nearest other point (inf for a single point)."""
    if len(points) < 2:
        return np.full(len(points), np.inf)
    dist = cdist(points, points)
    np.fill_diagonal(dist, np.inf)
    return dist.min(axis=1)


def _branch(
    rng: np.random.Generator, a: np.ndarray, b: np.ndarray, r0: float, r1: float, bend: float
) -> dict[str, Any]:
    """A three-point capsule chain from ``a`` to ``b`` with a sideways bend at its middle."""
    e = b - a
    normal = np.array([-e[1], e[0]]) / max(float(np.linalg.norm(e)), 1e-9)
    mid = (a + b) / 2 + normal * rng.normal(0.0, bend) * float(np.linalg.norm(e))
    return {"points": [a.tolist(), mid.tolist(), b.tolist()], "radii": [r0, (r0 + r1) / 2, r1]}


# ==================================================================================================
# glomerulus, loops, capsule, tubules
# ==================================================================================================


def _tuft(rng: np.random.Generator, radius: float, centre: np.ndarray, expansion: float) -> dict[str, Any]:
    """Lobulated tuft: 4-7 lobules around the centre and the mesangial tree that feeds them.

    ``expansion`` widens the mesangial stalks (mesangial hypercellularity / matrix expansion).
    """
    n_lob = int(rng.integers(4, 8))
    base = rng.uniform(0, 2 * np.pi)
    angles = base + 2 * np.pi * np.arange(n_lob) / n_lob + rng.normal(0, 0.18, n_lob)
    lobules = []
    for ang in angles:
        dist = radius * rng.uniform(0.38, 0.5)
        lobules.append(
            {
                "center": (centre + dist * _unit(ang)).tolist(),
                "radius": float(radius - dist + rng.uniform(-0.04, 0.02) * radius),
                "aspect": float(rng.uniform(0.8, 0.97)),
                "angle": float(ang + rng.normal(0, 0.3)),
                "harmonics": _outline(rng, 0.05, 3),
            }
        )
    hub = centre + rng.normal(0, 0.06 * radius, 2)
    pole = float(rng.uniform(0, 2 * np.pi))
    stalk = rng.uniform(1.6, 2.4) * expansion  # µm: stalk radius at the hub
    chains = [_branch(rng, hub, centre + 0.97 * radius * _unit(pole), stalk * 1.25, stalk * 1.4, 0.05)]
    for lob, ang in zip(lobules, angles, strict=True):
        lc = np.asarray(lob["center"])
        chains.append(_branch(rng, hub, lc, stalk, stalk * 0.75, 0.12))
        for _ in range(int(rng.integers(1, 3))):
            twig = ang + rng.uniform(-1.0, 1.0)
            end = lc + lob["radius"] * rng.uniform(0.45, 0.75) * _unit(twig)
            chains.append(_branch(rng, lc, end, stalk * 0.7, stalk * rng.uniform(0.3, 0.45), 0.15))
    return {"center": centre.tolist(), "radius": float(radius), "lobules": lobules, "chains": chains}


def _inside_lobules(points: np.ndarray, lobules: list[dict[str, Any]], margin: np.ndarray) -> np.ndarray:
    """Which points lie inside some lobule (approximated by its ellipse) by at least ``margin`` µm."""
    inside = np.zeros(len(points), bool)
    for lob in lobules:
        dx, dy = (points - np.asarray(lob["center"])).T
        ca, sa = np.cos(lob["angle"]), np.sin(lob["angle"])
        u, v = dx * ca + dy * sa, (-dx * sa + dy * ca) / lob["aspect"]
        inside |= np.hypot(u, v) + margin / lob["aspect"] <= lob["radius"]
    return inside


def _stalk_side(
    rng: np.random.Generator, chains: list[dict[str, Any]], mean_r: float, wall: float
) -> np.ndarray:
    """Loop centres lined up on both sides of every stalk segment, like leaves along a twig."""
    out = []
    step = 2 * (mean_r + wall) + 0.5
    for chain in chains[1:]:  # not along the afferent trunk at the vascular pole
        pts, rad = np.asarray(chain["points"], float), np.asarray(chain["radii"], float)
        for i in range(len(pts) - 1):
            a, e = pts[i], pts[i + 1] - pts[i]
            length = float(np.linalg.norm(e))
            normal = np.array([-e[1], e[0]]) / max(length, 1e-9)
            t = (np.arange(max(int(length / step), 1)) + rng.uniform(0.2, 0.8)) * step / max(length, 1e-9)
            t = t[t <= 1.0]
            r_stalk = rad[i] + t * (rad[i + 1] - rad[i])
            for side in (-1.0, 1.0):
                dist = r_stalk + wall + mean_r + 0.3
                out.append(a + t[:, None] * e + side * dist[:, None] * normal)
    return np.concatenate(out) if out else np.zeros((0, 2))


def _loops(rng: np.random.Generator, tuft: dict[str, Any], mean_r: float) -> dict[str, Any]:
    """Capillary loop profiles packed in the lobules, lining the mesangial stalks and filling the rest.

    Candidates (first along both sides of the stalks, then on a jittered hexagonal lattice, then on a
    finer one that fills the gaps) are accepted greedily with the largest radius that keeps them
    inside a lobule, off the stalks and clear of the loops already placed (walls may touch).

    Returns:
        ``blobs`` (lumen outlines in the :func:`draw.polar_blob` parametrisation, µm) and the GBM
        ``wall_um``.
    """
    wall = float(rng.uniform(0.7, 1.0))
    gap = float(rng.uniform(0.1, 0.6))
    spacing = 2 * (mean_r + wall) + gap
    side = _stalk_side(rng, tuft["chains"], mean_r, wall)
    grid = np.asarray(tuft["center"]) + _lattice(rng, spacing, tuft["radius"] * 1.05, 0.12)
    fill = np.asarray(tuft["center"]) + _lattice(rng, 0.5 * spacing, tuft["radius"] * 1.05, 0.2)
    pts = np.concatenate([side + rng.normal(0.0, 0.3, side.shape), grid, fill])
    rmax = mean_r * rng.uniform(0.85, 1.3, len(pts))
    keep = _inside_lobules(pts, tuft["lobules"], 0.6 * mean_r + wall)
    pts, rmax = pts[keep], rmax[keep]
    rmax = np.minimum(rmax, _segment_distance(pts, tuft["chains"]) - wall - 0.3)
    rmin = 0.5 * mean_r
    keep = rmax >= rmin
    pts, rmax = pts[keep], rmax[keep]
    dist = cdist(pts, pts) - 2 * wall - gap
    limit = rmax.copy()  # largest radius each candidate could still take
    radii = np.zeros(len(pts))
    order = np.zeros(len(pts), np.int64)
    n = 0
    for i in range(len(pts)):
        if limit[i] >= rmin:
            order[n], radii[i] = i, limit[i]
            n += 1
            np.minimum(limit, dist[i] - radii[i], out=limit)
    idx = order[:n]
    k = np.arange(2, 4)
    amp = rng.normal(0.0, 0.05 / np.sqrt(k), (n, len(k)))
    phase = rng.uniform(0, 2 * np.pi, (n, len(k)))
    aspect = rng.uniform(0.75, 1.0, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    blobs = [
        {
            "center": pts[i].tolist(),
            "radius": float(radii[i]),
            "aspect": float(aspect[j]),
            "angle": float(angle[j]),
            "harmonics": np.column_stack([k, amp[j], phase[j]]).tolist(),
        }
        for j, i in enumerate(idx)
    ]
    return {"blobs": blobs, "wall_um": wall}


def _capsule(rng: np.random.Generator, tuft: dict[str, Any]) -> dict[str, Any]:
    """Bowman's capsule: a thin membrane around the tuft, leaving Bowman's (urinary) space."""
    return {
        "center": tuft["center"],
        "radius": float(tuft["radius"] * rng.uniform(1.14, 1.26)),
        "aspect": float(rng.uniform(0.93, 1.0)),
        "angle": float(rng.uniform(0, 2 * np.pi)),
        "harmonics": _outline(rng, 0.025, 4),
        "thickness_um": float(rng.uniform(1.0, 1.8)),
    }


def _vessel(rng: np.random.Generator, capsule: dict[str, Any], chance: float) -> list[dict[str, Any]]:
    """An optional interlobular arteriole in the interstitium (0 or 1 in a list).

    Its internal elastic lamina is a thin wavy ring that autofluoresces brightly in every class, as
    in real frozen sections; the media around it is faint.
    """
    if rng.random() >= chance:
        return []
    radius = float(rng.uniform(7.0, 13.0))
    media = float(radius * rng.uniform(0.5, 0.9))
    ang = rng.uniform(0, 2 * np.pi)
    dist = capsule["radius"] * 1.06 + capsule["thickness_um"] + radius + media + rng.uniform(2.0, 25.0)
    waves = float(rng.integers(10, 17))
    return [
        {
            "center": (np.asarray(capsule["center"]) + dist * _unit(ang)).tolist(),
            "radius": radius,
            "aspect": float(rng.uniform(0.6, 1.0)),
            "angle": float(rng.uniform(0, 2 * np.pi)),
            "harmonics": [[waves, float(rng.uniform(0.03, 0.07)), float(rng.uniform(0, 2 * np.pi))]],
            "media_um": media,
            "lamina": float(rng.uniform(1.5, 3.5)),
        }
    ]


def _tubules(
    rng: np.random.Generator,
    field_um: float,
    capsule: dict[str, Any],
    vessels: list[dict[str, Any]],
    cast_rate: float,
) -> list[dict[str, Any]]:
    """Tubule cross-sections filling the field outside Bowman's capsule (may be cut by the border).

    A ``cast_rate`` share of them hold a protein cast in the lumen, which binds the conjugate
    non-specifically (homogeneous bright plug) whatever the diagnosis.
    """
    mean_r = rng.uniform(18.0, 26.0)
    pts = _lattice(rng, 2 * mean_r + 3.0, 0.5 * field_um + mean_r, 0.12)
    cap_r = capsule["radius"] * (1.0 + 0.06) + capsule["thickness_um"]
    room = np.linalg.norm(pts - np.asarray(capsule["center"]), axis=1) - cap_r - 2.0
    for v in vessels:
        reach = v["radius"] * (1.0 + v["harmonics"][0][1]) + v["media_um"] + 2.0
        room = np.minimum(room, np.linalg.norm(pts - np.asarray(v["center"]), axis=1) - reach)
    r = np.minimum(np.minimum(mean_r * rng.uniform(0.8, 1.2, len(pts)), 0.5 * _nearest(pts) - 1.5), room)
    keep = r >= 8.0
    n = int(keep.sum())
    casts = np.where(rng.random(n) < cast_rate, rng.uniform(0.25, 0.8, n), 0.0)
    return [
        {
            "center": p.tolist(),
            "radius": float(ri),
            "aspect": float(rng.uniform(0.6, 1.0)),
            "angle": float(rng.uniform(0, 2 * np.pi)),
            "harmonics": _outline(rng, 0.05, 4),
            "lumen": float(rng.uniform(0.25, 0.55)),
            "brightness": float(rng.uniform(0.6, 1.4)),
            "cast": float(c),
        }
        for p, ri, c in zip(pts[keep], r[keep], casts, strict=True)
    ]


# ==================================================================================================
# deposits (granule specs in µm)
# ==================================================================================================


def _granules(points: np.ndarray, amp: np.ndarray, sigma_um: float) -> dict[str, Any]:
    return {
        "points": np.asarray(points).reshape(-1, 2).tolist(),
        "amp": np.asarray(amp).tolist(),
        "sigma_um": float(sigma_um),
    }


def _no_granules() -> dict[str, Any]:
    return _granules(np.zeros((0, 2)), np.zeros(0), 1.0)


def _along_stalks(rng: np.random.Generator, chains: list[dict[str, Any]], density: float) -> np.ndarray:
    """Points along the mesangial stalks (``density`` per µm of stalk), scattered across their width."""
    pts = [np.asarray(c["points"], float) for c in chains]
    rad = [np.asarray(c["radii"], float) for c in chains]
    start = np.concatenate([p[:-1] for p in pts])
    e = np.concatenate([p[1:] - p[:-1] for p in pts])
    r0, r1 = np.concatenate([r[:-1] for r in rad]), np.concatenate([r[1:] for r in rad])
    lengths = np.linalg.norm(e, axis=1)
    n = int(rng.poisson(density * lengths.sum()))
    which = rng.choice(len(e), n, p=lengths / lengths.sum())
    t = rng.uniform(0, 1, n)[:, None]
    normal = np.column_stack([-e[which, 1], e[which, 0]]) / np.maximum(lengths[which], 1e-9)[:, None]
    width = r0[which, None] + t * (r1[which, None] - r0[which, None])
    return start[which] + t * e[which] + normal * rng.normal(0.0, 0.55, (n, 1)) * width


def _along_walls(
    rng: np.random.Generator,
    blobs: list[dict[str, Any]],
    spacing: float,
    offset: float,
    jitter: float,
    share: float = 1.0,
) -> np.ndarray:
    """Evenly spaced points on the capillary walls of a ``share`` of the loops (global if 1)."""
    out = []
    for blob in blobs:
        if share < 1.0 and rng.random() > share:
            continue
        n = max(round(2 * np.pi * blob["radius"] * (1 + blob["aspect"]) / 2 / spacing), 3)
        t = (np.arange(n) + rng.normal(0.0, jitter, n)) * 2 * np.pi / n + rng.uniform(0, 2 * np.pi)
        out.append(outline_points(blob, t, offset + rng.normal(0.0, 0.15, n)))
    return np.concatenate(out) if out else np.zeros((0, 2))


def _along_tubules(
    rng: np.random.Generator, tubules: list[dict[str, Any]], spacing: float, share: float
) -> np.ndarray:
    """Granular points on the basement membranes of a ``share`` of the tubules."""
    out = []
    for tub in tubules:
        if rng.random() > share:
            continue
        n = max(int(2 * np.pi * tub["radius"] / spacing), 4)
        keep = rng.random(n) < rng.uniform(0.35, 0.9)  # segmental
        t = (np.arange(n) + rng.normal(0, 0.3, n)) * 2 * np.pi / n
        out.append(outline_points(tub, t[keep], 0.3))
    return np.concatenate(out) if out else np.zeros((0, 2))


def _droplets(rng: np.random.Generator, tubules: list[dict[str, Any]], share: float) -> dict[str, Any]:
    """Protein reabsorption droplets: coarse granules in the epithelium of a ``share`` of the tubules.

    Proximal tubular cells take up filtered protein (immunoglobulin, albumin) in proteinuric states
    of any cause, so the droplets stain non-specifically in every class.
    """
    out = []
    for tub in tubules:
        if rng.random() >= share:
            continue
        area = np.pi * tub["radius"] ** 2 * tub["aspect"] * (1.0 - tub["lumen"] ** 2)
        n = int(area * rng.uniform(0.01, 0.04))
        depth = rng.uniform(0.1, 0.9, n) * (1.0 - tub["lumen"]) * tub["radius"]
        out.append(outline_points(tub, rng.uniform(0, 2 * np.pi, n), -depth))
    pts = np.concatenate(out) if out else np.zeros((0, 2))
    return _granules(pts, rng.uniform(0.3, 1.0, len(pts)), rng.uniform(0.8, 1.3))


def _interstitial(rng: np.random.Generator, n: int, field_um: float, capsule: dict[str, Any]) -> np.ndarray:
    """Extraglomerular granular clusters (peritubular capillaries, vessel walls) outside the capsule."""
    pts = rng.uniform(-0.5 * field_um, 0.5 * field_um, (4 * n + 4, 2))
    far = np.linalg.norm(pts - np.asarray(capsule["center"]), axis=1) > capsule["radius"] * 1.08
    centres = pts[far][:n]
    if not len(centres):
        return np.zeros((0, 2))
    k = rng.integers(3, 9, len(centres))
    return np.concatenate([c + rng.normal(0, 2.0, (m, 2)) for c, m in zip(centres, k, strict=True)])


def _deposits(
    label: str,
    rng: np.random.Generator,
    tuft: dict[str, Any],
    loops: dict[str, Any],
    tubules: list[dict[str, Any]],
    capsule: dict[str, Any],
    field_um: float,
) -> dict[str, Any]:
    """Specific (antibody) staining of one class: granule sets, linear levels, diffuse smudge, subtype."""
    blobs, wall = loops["blobs"], loops["wall_um"]
    out: dict[str, Any] = {
        "mesangial": _no_granules(),
        "capillary": _no_granules(),
        "tbm": _no_granules(),
        "interstitial": _no_granules(),
        "linear_gbm": 0.0,
        "linear_tbm": 0.0,
        "linear_capsule": 0.0,
        "mesangial_diffuse": 0.0,
        "wall_diffuse": 0.0,
    }
    if label == "iga_mesangial":
        pts = _along_stalks(rng, tuft["chains"], rng.uniform(0.25, 0.8))
        out["mesangial"] = _granules(pts, rng.lognormal(0.0, 0.35, len(pts)) * 0.55, rng.uniform(0.8, 1.6))
        out["mesangial_diffuse"] = float(rng.uniform(0.1, 0.45))
        subtype = "mesangial"
        if rng.random() < 0.35:  # segmental extension to some peripheral loops
            cap = _along_walls(rng, blobs, rng.uniform(3.0, 4.5), wall, 0.35, share=rng.uniform(0.08, 0.2))
            out["capillary"] = _granules(cap, rng.uniform(0.3, 0.6, len(cap)), 0.9)
            subtype = "mesangial+capillary"
    elif label == "membranous":
        cap = _along_walls(rng, blobs, rng.uniform(2.6, 3.6), wall * 0.8 + 0.4, 0.12)
        out["capillary"] = _granules(cap, rng.uniform(0.65, 1.0, len(cap)), rng.uniform(0.6, 0.8))
        out["wall_diffuse"] = float(rng.uniform(0.0, 0.08))
        subtype = "subepithelial_granular"
    elif label == "anti_gbm":
        out["linear_gbm"] = 1.0
        out["linear_capsule"] = float(rng.uniform(0.1, 0.45))
        subtype = "linear"
        if rng.random() < 0.3:
            out["linear_tbm"] = float(rng.uniform(0.15, 0.4))
            subtype = "linear+tbm"
    elif label == "lupus_full_house":
        mes = _along_stalks(rng, tuft["chains"], rng.uniform(0.25, 0.45))
        out["mesangial"] = _granules(mes, rng.lognormal(0.0, 0.4, len(mes)) * 0.5, rng.uniform(0.9, 1.3))
        share = rng.uniform(0.5, 0.9)
        cap = _along_walls(rng, blobs, rng.uniform(2.2, 3.6), wall * 0.3, 0.45, share=share)
        out["capillary"] = _granules(cap, rng.lognormal(0.0, 0.45, len(cap)) * 0.6, rng.uniform(0.8, 1.2))
        out["mesangial_diffuse"] = float(rng.uniform(0.1, 0.3))
        out["wall_diffuse"] = float(rng.uniform(0.1, 0.35))  # wire-loop thickening
        tbm = _along_tubules(rng, tubules, rng.uniform(3.0, 5.0), rng.uniform(0.4, 0.9))
        out["tbm"] = _granules(tbm, rng.uniform(0.3, 0.7, len(tbm)), rng.uniform(0.8, 1.2))
        extra = _interstitial(rng, int(rng.integers(1, 5)), field_um, capsule)
        out["interstitial"] = _granules(extra, rng.uniform(0.3, 0.8, len(extra)), 1.0)
        subtype = "full_house"
    else:  # negative: no specific staining (the non-specific smudge is added for every class)
        subtype = "none"
    out["subtype"] = subtype
    return out


_EXPANSION = {  # mesangial stalk width factor: expanded in IgA nephropathy and lupus nephritis
    "anti_gbm": (0.85, 1.15),
    "iga_mesangial": (1.1, 1.8),
    "lupus_full_house": (1.0, 1.5),
    "membranous": (0.85, 1.15),
    "negative": (0.85, 1.15),
}

_INTENSITY = {  # specific stain level (before the group's stain gain): trace/1+ to 3+, overlapping
    "anti_gbm": (0.45, 0.95),
    "iga_mesangial": (0.5, 1.0),
    "lupus_full_house": (0.6, 1.1),
    "membranous": (0.45, 0.95),
    "negative": (0.0, 0.0),
}


def sample_params(label: str, rng: np.random.Generator, style: dict[str, float]) -> dict[str, Any]:
    """Draw every random quantity of one image (geometry in µm, levels, seeds) for class ``label``."""
    if label not in CLASSES:
        raise UnknownNameError(f"unknown class {label!r}; expected one of {CLASSES}")
    diameter = float(np.clip(style["glom_diameter_um"] * rng.normal(1.0, 0.08), 90.0, 230.0))
    field_um = diameter * style["framing"] * rng.uniform(0.94, 1.06)
    centre = rng.uniform(-0.04, 0.04, 2) * field_um
    tuft = _tuft(rng, diameter / 2, centre, rng.uniform(*_EXPANSION[label]))
    loops = _loops(rng, tuft, style["loop_radius_um"] * rng.uniform(0.9, 1.1))
    capsule = _capsule(rng, tuft)
    vessels = _vessel(rng, capsule, style["vessel_chance"])
    tubules = _tubules(rng, field_um, capsule, vessels, style["cast_rate"] * rng.uniform(0.0, 2.0))
    deposits = _deposits(label, rng, tuft, loops, tubules, capsule, field_um)
    droplets = _droplets(rng, tubules, style["droplet_rate"] * rng.uniform(0.0, 2.0))
    tint = style["fitc_tint"] * 0.14 + rng.normal(0.0, 0.02)
    fitc = np.clip(np.asarray(FITC_RGB) + np.array([tint, 0.0, -0.6 * tint]), 0.0, 1.0)
    yellow = style["autofluor_yellow"]
    af_rgb = (1 - yellow) * fitc + yellow * np.asarray(AUTOFLUOR_RGB)
    af = style["autofluorescence"] * rng.uniform(0.8, 1.25)
    return {
        "label": label,
        "field_um": float(field_um),
        "tuft": tuft,
        "loops": loops,
        "capsule": capsule,
        "tubules": tubules,
        "vessels": vessels,
        "deposits": deposits,
        "intensity": float(style["stain_gain"] * rng.uniform(*_INTENSITY[label])),
        "nonspecific": float(style["stain_gain"] * rng.uniform(0.0, 0.06)),
        "cast_gain": float(style["stain_gain"]),
        "droplets": droplets,
        "droplet_level": float(style["stain_gain"] * rng.uniform(0.15, 0.45)),
        "autofluor": {
            "tubule": float(af),
            "tuft": float(af * rng.uniform(0.2, 0.4)),
            "capsule": float(af * rng.uniform(0.3, 0.6)),
            "interstitium": float(af * rng.uniform(0.08, 0.2)),
            "granularity": float(rng.uniform(0.4, 0.8)),
            "seed": int(rng.integers(2**31)),
        },
        "fitc_rgb": [float(v) for v in fitc],
        "autofluor_rgb": [float(v) for v in af_rgb],
        "texture_seed": int(rng.integers(2**31)),
        "background": float(style["background"] * rng.uniform(0.85, 1.15)),
        "exposure": float(style["exposure"] * rng.uniform(0.92, 1.08)),
        "auto_exposure": float(style["auto_exposure"]),
        "exposure_target": float(rng.uniform(0.7, 0.9)),
        "vignette": float(style["vignette"]),
        "vignette_seed": int(rng.integers(2**31)),
        "blur_um": float(style["focus_blur_um"] * rng.uniform(0.8, 1.25)),
        "noise_read": float(style["noise_level"] * rng.uniform(0.85, 1.15)),
        "noise_shot": float(rng.uniform(0.002, 0.008)),
        "noise_seed": int(rng.integers(2**31)),
    }


# ==================================================================================================
# drawing (deterministic)
# ==================================================================================================


def _stamps(
    fr: d.Frame, blobs: list[dict[str, Any]], offsets_um: np.ndarray, soft: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft insides of many blob outlines, each moved outwards by its own offsets (µm), in one go.

    The outline is that of :func:`draw.polar_blob` (``r(t) = radius * (1 + sum a_k cos(k t + p_k))``),
    moved by a constant distance along the radius, so ``inside(b) - inside(a)`` is a band of constant
    width: a capillary wall, a basement membrane, a tubular epithelium. All blobs are evaluated in
    equally sized square windows at once, which keeps a hundred capillary loops cheap.

    Args:
        fr: the µm-to-pixel frame.
        blobs: ``n`` blob specs (µm).
        offsets_um: ``(n, k)`` outward offsets of the outline per blob.
        soft: edge ramp width in pixels.

    Returns:
        ``rows`` ``(n, W, 1)`` and ``cols`` ``(n, 1, W)`` pixel indices of each window and the masks
        ``(n, k, W, W)``.
    """
    n_harm = max(len(b["harmonics"]) for b in blobs)
    harm = np.zeros((len(blobs), max(n_harm, 1), 3), np.float32)
    for i, b in enumerate(blobs):
        if b["harmonics"]:
            harm[i, : len(b["harmonics"])] = b["harmonics"]
    centre = fr.xy([b["center"] for b in blobs]).astype(np.float32)
    radius = np.array([b["radius"] for b in blobs], np.float32) * fr.ppu
    aspect = np.array([max(b["aspect"], 1e-3) for b in blobs], np.float32)
    angle = np.array([b["angle"] for b in blobs], np.float32)
    off = np.asarray(offsets_um, np.float32).reshape(len(blobs), -1) * fr.ppu
    reach = radius * (1.0 + np.abs(harm[:, :, 1]).sum(1)) + np.maximum(off.max(1), 0.0) + 2.0 * soft + 1.0
    half = int(np.ceil(reach.max()))
    grid = np.arange(-half, half + 1, dtype=np.int64)
    origin = np.floor(centre).astype(np.int64)
    cols = (origin[:, 0, None] + grid)[:, None, :]
    rows = (origin[:, 1, None] + grid)[:, :, None]
    dx = (cols - centre[:, 0, None, None]).astype(np.float32)
    dy = (rows - centre[:, 1, None, None]).astype(np.float32)
    ca, sa = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = dx * ca + dy * sa
    v = (-dx * sa + dy * ca) / aspect[:, None, None]
    rho = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    mod = np.ones_like(rho)
    for j in range(harm.shape[1]):
        k, amp, phase = (harm[:, j, c, None, None] for c in range(3))
        mod += amp * np.cos(k * theta + phase)
    dist = rho - radius[:, None, None] * mod
    s = np.float32(max(soft, 1e-3))
    masks = np.clip(0.5 - (dist[:, None] - off[:, :, None, None]) / s, 0.0, 1.0)
    return rows, cols, masks


def _scatter_max(
    shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """Union (pixel-wise maximum) of window stamps ``values`` ``(n, W, W)`` into an image of ``shape``."""
    h, w = shape
    rr, cc = np.broadcast_arrays(rows, cols)
    keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w) & (values > 0)
    out = np.zeros(shape, np.float32)
    np.maximum.at(out, (rr[keep], cc[keep]), values[keep].astype(np.float32))
    return out


def _anatomy(params: dict[str, Any], size: int) -> dict[str, np.ndarray]:
    """Structure masks plus ``tubule_level`` (epithelium weighted by each tubule's brightness)."""
    shape = (size, size)
    fr = d.Frame(size, params["field_um"])
    soft = max(0.6, 0.3 * fr.ppu)
    thin = 0.8 / fr.ppu  # membranes at least ~0.8 px wide so that they survive small output sizes
    keys = ("lumens", "gbm", "tubules", "tbm", "tubule_level", "casts")
    out = {k: np.zeros(shape, np.float32) for k in keys}
    blobs = params["loops"]["blobs"]
    if blobs:
        wall = max(params["loops"]["wall_um"], thin)
        rows, cols, m = _stamps(fr, blobs, np.tile([0.0, wall], (len(blobs), 1)), soft)
        out["lumens"] = _scatter_max(shape, rows, cols, m[:, 0])
        out["gbm"] = _scatter_max(shape, rows, cols, m[:, 1] - m[:, 0])
    lobules = params["tuft"]["lobules"]
    rows, cols, m = _stamps(fr, lobules, np.zeros((len(lobules), 1)), 2.0 * soft)
    out["tuft"] = _scatter_max(shape, rows, cols, m[:, 0])
    cap = params["capsule"]
    rows, cols, m = _stamps(fr, [cap], np.array([[0.0, max(cap["thickness_um"], thin)]]), soft)
    out["capsule"] = _scatter_max(shape, rows, cols, m[:, 1] - m[:, 0])
    tubules = params["tubules"]
    if tubules:
        tbm = max(0.7, thin)
        offs = np.array([[-(1.0 - t["lumen"]) * t["radius"], -tbm, 0.0] for t in tubules])
        rows, cols, m = _stamps(fr, tubules, offs, soft)
        body = m[:, 1] - m[:, 0]
        out["tubules"] = _scatter_max(shape, rows, cols, body)
        out["tbm"] = _scatter_max(shape, rows, cols, m[:, 2] - m[:, 1])
        level = np.array([t["brightness"] for t in tubules], np.float32)[:, None, None]
        out["tubule_level"] = _scatter_max(shape, rows, cols, level * body)
        cast = np.array([t["cast"] for t in tubules], np.float32)[:, None, None]
        out["casts"] = _scatter_max(shape, rows, cols, cast * m[:, 0])
    out["elastica"] = np.zeros(shape, np.float32)
    out["media"] = np.zeros(shape, np.float32)
    for v in params.get("vessels", []):
        lamina = max(0.6, thin)
        rows, cols, m = _stamps(fr, [v], np.array([[0.0, lamina, lamina + v["media_um"]]]), soft)
        out["elastica"] = np.maximum(
            out["elastica"], _scatter_max(shape, rows, cols, v["lamina"] * (m[:, 1] - m[:, 0]))
        )
        out["media"] = np.maximum(out["media"], _scatter_max(shape, rows, cols, m[:, 2] - m[:, 1]))
    chains = [
        d.capsule_chain(shape, fr.xy(c["points"]), np.asarray(c["radii"]) * fr.ppu, softness=soft)
        for c in params["tuft"]["chains"]
    ]
    out["mesangium"] = d.union(*chains)
    return out


def structure_masks(params: dict[str, Any], size: int) -> dict[str, np.ndarray]:
    """Soft masks (``float32``, ``size`` x ``size``, values in ``[0, 1]``) of the anatomy in one image.

    Keys: ``tuft`` (union of lobules), ``lumens`` (capillary lumens), ``gbm`` (capillary walls),
    ``mesangium`` (stalks), ``capsule`` (Bowman's capsule), ``tubules`` (tubular epithelium),
    ``tbm`` (tubular basement membranes). Ground truth for detection / segmentation work.
    """
    masks = _anatomy(params, size)
    for key in ("tubule_level", "casts", "elastica", "media"):
        del masks[key]
    return masks


def _granule_layer(shape: tuple[int, int], fr: d.Frame, spec: dict[str, Any]) -> np.ndarray:
    if not spec["points"]:
        return np.zeros(shape, np.float32)
    return d.granule_field(shape, fr.xy(spec["points"]), spec["amp"], spec["sigma_um"] * fr.ppu)


def _specific(
    shape: tuple[int, int], fr: d.Frame, params: dict[str, Any], m: dict[str, np.ndarray], seed: int
) -> np.ndarray:
    """Specific FITC signal (before the stain intensity): deposits, linear and diffuse staining."""
    dep = params["deposits"]
    sig = np.zeros(shape, np.float32)
    for key in ("mesangial", "capillary", "tbm", "interstitial"):
        sig += _granule_layer(shape, fr, dep[key])
    smooth = 1.0 + 0.2 * d.smooth_noise(shape, 12.0 * fr.ppu, seed + 1)
    if dep["linear_gbm"] > 0:  # smooth continuous ribbon along every wall
        sig += dep["linear_gbm"] * smooth * d.defocus(m["gbm"], 0.25 * fr.ppu)
    if dep["linear_tbm"] > 0:
        sig += dep["linear_tbm"] * m["tbm"] * smooth
    if dep["linear_capsule"] > 0:
        sig += dep["linear_capsule"] * m["capsule"] * smooth
    if dep["mesangial_diffuse"] > 0:
        sig += dep["mesangial_diffuse"] * d.defocus(m["mesangium"], 1.0 * fr.ppu) * smooth
    if dep["wall_diffuse"] > 0:  # patchy wall thickening ("wire loops")
        patchy = np.clip(d.smooth_noise(shape, 20.0 * fr.ppu, seed + 2) + 0.3, 0.0, None)
        sig += dep["wall_diffuse"] * d.defocus(m["gbm"], 0.6 * fr.ppu) * patchy
    return sig


def _autofluorescence(
    shape: tuple[int, int], fr: d.Frame, params: dict[str, Any], m: dict[str, np.ndarray], seed: int
) -> np.ndarray:
    """Non-specific tissue autofluorescence: granular tubular epithelium, faint tuft and capsule."""
    af = params["autofluor"]
    grain = d.smooth_noise(shape, 1.2 * fr.ppu, af["seed"] + seed, octaves=2)
    grain = np.clip(1.0 + af["granularity"] * grain, 0.0, None)
    broad = np.clip(1.0 + 0.3 * d.smooth_noise(shape, 25.0 * fr.ppu, af["seed"] + seed + 1), 0.2, None)
    out = af["tubule"] * m["tubule_level"] * grain + af["tubule"] * 0.5 * m["tbm"]
    cells = m["tuft"] * (1.0 - m["lumens"])
    out += af["tuft"] * (cells * (0.7 + 0.3 * grain) + 0.5 * m["gbm"])
    out += af["capsule"] * m["capsule"] + af["tubule"] * (m["elastica"] + 0.3 * m["media"] * grain)
    out += af["interstitium"] * (1.0 - np.clip(m["tubules"] + m["tuft"] + m["media"], 0.0, 1.0))
    return (out * broad).astype(np.float32)


def _gain(signal: np.ndarray, params: dict[str, Any]) -> float:
    """Camera gain: a fixed exposure, partly pulled towards putting the brightest structures at target."""
    top = max(float(np.percentile(signal, 99.5)), 0.02)
    auto = (params["exposure_target"] / top) ** params["auto_exposure"]
    return float(np.clip(params["exposure"] * auto, 0.3, 5.0))


def draw(params: dict[str, Any], size: int = 128) -> np.ndarray:
    """Render a parameter dict from :func:`sample_params` as a ``uint8`` RGB image ``size`` x ``size``."""
    shape = (size, size)
    fr = d.Frame(size, params["field_um"])
    seed_mix = size * 7_919  # textures are resampled per output size; geometry is not
    masks = _anatomy(params, size)
    specific = params["intensity"] * _specific(shape, fr, params, masks, params["texture_seed"] + seed_mix)
    specific += params["nonspecific"] * d.defocus(masks["mesangium"], 1.5 * fr.ppu)
    specific += params["cast_gain"] * masks["casts"]  # protein casts bind the conjugate in any class
    specific += params["droplet_level"] * _granule_layer(shape, fr, params["droplets"])
    auto = _autofluorescence(shape, fr, params, masks, seed_mix)
    fitc, af_rgb = np.asarray(params["fitc_rgb"], np.float32), np.asarray(params["autofluor_rgb"], np.float32)
    gain = _gain(specific + auto, params)
    img = gain * (d.colour_layer(specific, fitc) + d.colour_layer(auto, af_rgb))
    if params["vignette"] > 0:
        field = d.smooth_noise(shape, size / 2.0, params["vignette_seed"] + seed_mix)
        img = img * (1.0 + params["vignette"] * np.clip(field, -2.0, 2.0) / 2.0)[..., None]
    img = img + params["background"] * np.asarray([0.7, 1.0, 0.8], np.float32)
    img = d.defocus(img, d.total_blur(params["blur_um"] * fr.ppu, params, size))
    img = d.sensor_noise(
        img, params["noise_seed"] + seed_mix, read=params["noise_read"], shot=params["noise_shot"]
    )
    return d.to_uint8(img)


# ==================================================================================================
# truth and convenience
# ==================================================================================================


def truth(params: dict[str, Any], size: int) -> dict[str, Any]:
    """Per-image generator truth (scalars) for a manifest: pattern, counts, intensity, geometry, optics."""
    dep = params["deposits"]
    fr = d.Frame(size, params["field_um"])
    counts = {k: len(dep[k]["points"]) for k in ("mesangial", "capillary", "tbm", "interstitial")}
    return {
        "subtype": dep["subtype"],
        "blur_sigma": round(params["blur_um"] * fr.ppu, 4),
        "field_um": round(params["field_um"], 3),
        "glomerulus_diameter_um": round(2 * params["tuft"]["radius"], 3),
        "n_lobules": len(params["tuft"]["lobules"]),
        "n_loops": len(params["loops"]["blobs"]),
        "n_tubules": len(params["tubules"]),
        "n_casts": sum(t["cast"] > 0 for t in params["tubules"]),
        "n_vessels": len(params["vessels"]),
        "n_droplets": len(params["droplets"]["points"]),
        "deposit_count": sum(counts.values()),
        "mesangial_deposits": counts["mesangial"],
        "capillary_deposits": counts["capillary"],
        "tbm_deposits": counts["tbm"],
        "extraglomerular_deposits": counts["tbm"] + counts["interstitial"],
        "linear_gbm": round(dep["linear_gbm"], 4),
        "intensity": round(params["intensity"], 4),
        "autofluorescence": round(params["autofluor"]["tubule"], 4),
        "noise_sigma": round(params["noise_read"], 5),
    }


TASK = Phantom(
    name="kidney-if",
    classes=CLASSES,
    description="Kidney biopsy direct immunofluorescence (FITC), one glomerulus per image, 5 deposit patterns",
    style_sampler=sample_style,
    param_sampler=sample_params,
    drawer=draw,
    truth_fn=truth,
    one_label_per_group=True,
    default_size=128,
)
