"""Synthetic ANA immunofluorescence on HEp-2 cells: cytoplasmic patterns, FITC on black, whole cells annotated.

The companion of :mod:`.ana_hep2` (nuclear patterns) for whole-cell detectors: the stain fills the
cytoplasm and leaves the nucleus dark, and every *cell* (cell body plus nucleus) of a field is an
annotated instance with an exact mask. Nuclear shapes, monolayer placement, serum brightness (titer),
optics and camera come from :mod:`.ana_hep2`; this module adds the cell bodies and their staining.

Patterns (ICAP codes):

* ``mitochondrial`` (AC-21): coarse granules and short threads through the whole cytoplasm, densest and
  brightest around the nucleus and thinning towards the cell edge; the nucleus stays dark;
* ``fibrillar`` (AC-15, actin-like): long straight stress fibres across the cell body, several per cell
  in one to three orientations (the main bundle along the cell's long axis), a faint cortex along the
  cell edge; the nucleus stays dark; mitotic cells round up and show diffuse cortical staining;
* ``negative`` (fields only): dim autofluorescence, nuclei a little brighter than the cytoplasm, as in
  the ``ana-hep2`` negative.

Single-cell images (``TASK``) are ~30 µm crops centred on one cell body so the whole cell fits, with
neighbouring cells cut by the edge. Whole fields (``TASK.fields``) are monolayers of 30-80 cells placed
as in ``ana-hep2``; one :class:`Instance` per cell, label ``cell``, mask = the cell body's soft mask
``>= 0.5`` united with its nucleus. Cells may touch: a nucleus always belongs to its own cell, and a
pixel two cell bodies both cover belongs to the cell drawn first (the image shows that cell's stain
there too). Bodies are sampled so that they never cover a neighbour's nucleus.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from lablens.errors import UnknownNameError
from lablens.phantoms import ana_hep2 as ana
from lablens.phantoms import draw as d
from lablens.phantoms.contract import Instance, Phantom, PhantomFields

CLASSES: tuple[str, ...] = ("fibrillar", "mitochondrial")
FIELD_CLASSES: tuple[str, ...] = ("fibrillar", "mitochondrial", "negative")
INSTANCE_CLASSES: tuple[str, ...] = ("cell",)
ICAP: dict[str, str] = {"fibrillar": "AC-15", "mitochondrial": "AC-21", "negative": "AC-0"}

CROP_UM = 30.0  # side of a single-cell crop at magnification 1: a whole HEp-2 cell body fits
MITOTIC_SHARE_CROPS = 0.1
BODY_MAX_UM = 16.0  # largest half-length of an interphase cell body
NUCLEUS_MARGIN_UM = 0.6  # a cell body stays this far from its neighbours' nuclei

Cell = dict[str, Any]

sample_style = ana.sample_style


# ==================================================================================================
# cell bodies (cytoplasm) in the cell frame: u along the nucleus' major axis, origin at its centre
# ==================================================================================================


def _body(rng: np.random.Generator, cell: Cell, serum: dict[str, Any]) -> dict[str, Any]:
    """A cell body that holds the nucleus with a rim of cytoplasm (spread interphase, round mitotic)."""
    shape = cell["nucleus"]
    if cell["phase"] != "interphase":
        big = max(shape["radius"] + rng.uniform(2.0, 3.5), rng.uniform(8.0, 10.0) * serum["scale"])
        return {
            "radius": float(big),
            "aspect": float(rng.uniform(0.88, 1.0)),
            "harmonics": ana._outline(rng, 0.03, 4),
            "offset": [0.0, 0.0],
            "angle": 0.0,
        }
    reach = ana._reach(shape)
    big = float(np.clip(reach * rng.uniform(1.6, 2.3), reach + 3.5, BODY_MAX_UM))
    minor = shape["radius"] * shape["aspect"] + rng.uniform(3.0, 6.0)  # cytoplasm beside the nucleus
    aspect = float(np.clip(max(rng.uniform(0.5, 0.85), minor / big), 0.35, 1.0))
    return {
        "radius": big,
        "aspect": aspect,
        "harmonics": ana._outline(rng, rng.uniform(0.06, 0.12), 6),
        "offset": [
            float(rng.uniform(-0.3, 0.3) * max(big - reach - 1.5, 0.0)),
            float(rng.normal(0.0, 0.08) * shape["radius"] * shape["aspect"]),
        ],
        "angle": float(rng.normal(0.0, 0.15)),
    }


def _in_body(cell: Cell, pts: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Which field points (µm) lie inside the cell body scaled by ``scale`` about the nucleus' centre."""
    body = cell["body"]
    local = ana._rotate(np.asarray(pts, float) - np.asarray(cell["center"]), -cell["angle"])
    local = ana._rotate(local - scale * np.asarray(body["offset"]), -body["angle"])
    u, v = local[:, 0], local[:, 1] / body["aspect"]
    return np.hypot(u, v) < scale * ana._radius_at(body, np.arctan2(v, u))


def _trim_bodies(cells: list[Cell]) -> None:
    """Shrink each body (towards its nucleus) until it leaves every other nucleus free."""
    outlines = [ana._footprint_outline(c, NUCLEUS_MARGIN_UM) for c in cells]
    centres = np.array([c["center"] for c in cells], float).reshape(-1, 2)
    reaches = np.array([ana._reach(c["nucleus"]) for c in cells])
    for i, cell in enumerate(cells):
        body = cell["body"]
        span = float(np.hypot(*body["offset"])) + ana._reach(body)
        near = np.hypot(*(centres - centres[i]).T) < span + reaches + NUCLEUS_MARGIN_UM
        near[i] = False
        hits = [outlines[j] for j in np.flatnonzero(near)]
        if not hits:
            continue
        pts = np.concatenate(hits)
        floor = (ana._reach(cell["nucleus"]) + 1.0) / body["radius"]
        scale = 1.0
        while scale > floor and _in_body(cell, pts, scale).any():
            scale *= 0.94
        if scale < 1.0:
            body["radius"] = float(body["radius"] * scale)
            body["offset"] = [float(body["offset"][0] * scale), float(body["offset"][1] * scale)]


# ==================================================================================================
# staining
# ==================================================================================================


def _levels(pattern: str, rng: np.random.Generator) -> dict[str, float]:
    """Relative brightness of each compartment (times the cell's gain)."""
    u = rng.uniform
    if pattern == "mitochondrial":
        z = {
            "diffuse": u(0.15, 0.25),
            "floor": u(0.25, 0.45),
            "falloff_um": u(3.0, 6.0),
            "granule": u(0.3, 0.42),
        }
        z.update(nucleus=u(0.02, 0.06), cortex=0.0, fibre=0.0)
    elif pattern == "fibrillar":
        z = {"diffuse": u(0.15, 0.22), "floor": u(0.6, 0.8), "falloff_um": u(5.0, 9.0), "granule": 0.0}
        z.update(nucleus=u(0.02, 0.06), cortex=u(0.08, 0.16), fibre=u(1.0, 1.3))
    else:  # negative: faint, featureless autofluorescence (nucleus a little brighter, as in ana-hep2)
        z = {"diffuse": 0.5, "floor": 1.0, "falloff_um": 5.0, "granule": 0.0}
        z.update(nucleus=1.0, cortex=0.0, fibre=0.0)
    z["tex"] = u(0.05, 0.12)
    return {k: float(v) for k, v in z.items()}


def _fibres(rng: np.random.Generator, cell: Cell) -> list[dict[str, Any]]:
    """Straight stress fibres (cell frame, µm) in 1-3 orientation bundles spanning the body."""
    body = cell["body"]
    theta = np.linspace(0.0, 2 * np.pi, 96, endpoint=False)
    rho = ana._radius_at(body, theta)
    outline = ana._body_to_cell(
        np.column_stack([rho * np.cos(theta), body["aspect"] * rho * np.sin(theta)]), body
    )
    centre = np.asarray(body["offset"], float)
    length = 2.0 * (np.hypot(*(outline - centre).T).max() + 1.0)
    t = np.linspace(-length / 2, length / 2, 97)
    n_families = int(rng.choice([1, 2, 3], p=[0.3, 0.5, 0.2]))
    axis = body["angle"] + rng.normal(0.0, 0.12)  # the main bundle runs along the cell
    out: list[dict[str, Any]] = []
    for fam in range(n_families):
        alpha = axis if fam == 0 else axis + rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.9)
        e, n = np.array([np.cos(alpha), np.sin(alpha)]), np.array([-np.sin(alpha), np.cos(alpha)])
        across = (outline - centre) @ n
        lo, hi = across.min() * 0.85, across.max() * 0.85
        m = int(rng.integers(6, 13)) if fam == 0 else int(rng.integers(2, 6))

        def across_body(g: np.random.Generator, k: int, lo: float = lo, hi: float = hi) -> np.ndarray:
            return np.column_stack([g.uniform(lo, hi, k), np.zeros(k)])

        p = ana._spaced(rng, across_body, m, 0.9)[:, :1]
        lines = centre + (p * n)[:, None, :] + t[None, :, None] * e  # (m, len(t), 2)
        inside = _in_cell_body(body, lines.reshape(-1, 2)).reshape(m, len(t))
        t0 = np.where(inside, t, np.inf).min(axis=1)
        t1 = np.where(inside, t, -np.inf).max(axis=1)
        cut0, cut1 = rng.uniform(0.03, 0.2, m), rng.uniform(0.03, 0.2, m)
        amp = rng.uniform(0.55, 1.0, m)
        for k in np.flatnonzero(t1 - t0 >= 4.0):  # chords shorter than 4 µm carry no stress fibre
            chord = t1[k] - t0[k]
            a, b = t0[k] + cut0[k] * chord, t1[k] - cut1[k] * chord
            out.append(
                {
                    "a": (centre + p[k, 0] * n + a * e).tolist(),
                    "b": (centre + p[k, 0] * n + b * e).tolist(),
                    "amp": float(amp[k]),
                }
            )
    return out


def _in_cell_body(body: dict[str, Any], pts_cell: np.ndarray) -> np.ndarray:
    local = ana._rotate(np.asarray(pts_cell, float) - np.asarray(body["offset"]), -body["angle"])
    u, v = local[:, 0], local[:, 1] / body["aspect"]
    return np.hypot(u, v) < 0.97 * ana._radius_at(body, np.arctan2(v, u))


def _decorate(rng: np.random.Generator, cell: Cell, serum: dict[str, Any], style: dict[str, float]) -> Cell:
    """Brightness and staining of a cell whose body is final."""
    pattern = serum["pattern"]
    cell["gain"] = float(serum["gain"] * np.exp(rng.normal(0.0, 0.18)))
    cell["levels"] = _levels(pattern, rng)
    cell["cyto_level"] = float(style["cyto_level"] * rng.uniform(0.8, 1.2))
    cell["granules"] = None
    cell["fibres"] = []
    if pattern == "mitochondrial":
        body = cell["body"]
        area = np.pi * body["radius"] ** 2 * body["aspect"]
        cell["granules"] = {
            "n": int(area * rng.uniform(1.3, 2.0)),
            "sigma": float(rng.uniform(0.3, 0.42)),
            "p_thread": float(rng.uniform(0.3, 0.6)),
            "seed": int(rng.integers(2**31)),
        }
    elif pattern == "fibrillar" and cell["phase"] == "interphase":
        cell["fibres"] = _fibres(rng, cell)
        cell["fibre_sigma"] = float(rng.uniform(0.16, 0.26))
    return cell


def _new_cells(
    rng: np.random.Generator, cells: list[Cell], serum: dict[str, Any], style: dict[str, float]
) -> None:
    for cell in cells:
        cell["body"] = _body(rng, cell, serum)
    _trim_bodies(cells)
    for cell in cells:
        _decorate(rng, cell, serum, style)


# ==================================================================================================
# parameters: single-cell crops and whole fields
# ==================================================================================================


def _serum(label: str, rng: np.random.Generator, style: dict[str, float]) -> dict[str, Any]:
    return ana._serum(label, rng, style, subtype=ICAP[label])


def sample_params(label: str, rng: np.random.Generator, style: dict[str, float]) -> dict[str, Any]:
    """Every random quantity of one single-cell crop, centred on the target cell's body."""
    if label not in CLASSES:
        raise UnknownNameError(f"unknown cytoplasmic ANA pattern {label!r}; expected one of {CLASSES}")
    field_um = CROP_UM / (style["magnification"] * rng.uniform(0.97, 1.03))
    serum = _serum(label, rng, style)
    target = ana._new_cell(
        rng, serum, ana._phase(rng, MITOTIC_SHARE_CROPS), (0.0, 0.0), rng.uniform(0, 2 * np.pi)
    )
    target["body"] = _body(rng, target, serum)
    body = target["body"]
    fit = (field_um / 2 - 0.8) / (ana._reach(body) + 0.5)  # the whole cell fits into the crop
    if fit < 1.0:
        body["radius"] = float(body["radius"] * fit)
    jitter = np.clip(rng.normal(0.0, 0.5, 2), -1.0, 1.0)
    centre = -ana._rotate(body["offset"], target["angle"])[0] + jitter
    target["center"] = [float(centre[0]), float(centre[1])]
    cells = [target]
    half = field_um / 2
    for _ in range(int(rng.choice([0, 1, 2, 3], p=[0.2, 0.35, 0.3, 0.15]))):
        for _try in range(25):
            side, along = int(rng.integers(4)), rng.uniform(-half, half)
            cand = ana._new_cell(rng, serum, ana._phase(rng, 0.05), (0.0, 0.0), rng.uniform(0, 2 * np.pi))
            across = half + rng.uniform(0.3, 0.9) * cand["nucleus"]["radius"]
            pos = [across, along] if side < 2 else [along, across]
            cand["center"] = [float(pos[0] * (-1) ** side), float(pos[1] * (-1) ** side)]
            if (
                not any(ana._clash(cand, c, 1.0) for c in cells)
                and not _in_body(target, ana._footprint_outline(cand, NUCLEUS_MARGIN_UM)).any()
            ):
                cand["body"] = _body(rng, cand, serum)
                cells.append(cand)
                break
    _trim_bodies(cells)
    for cell in cells:
        _decorate(rng, cell, serum, style)
    return {
        "label": label,
        "subtype": serum["subtype"],
        "titer": serum["titer"],
        "field_um": float(field_um),
        "cells": cells,
        **ana._optics(rng, style),
    }


def sample_field(label: str, rng: np.random.Generator, style: dict[str, float]) -> dict[str, Any]:
    """Every random quantity of one whole field: a HEp-2 monolayer of 30-80 cells, 2-8 % mitotic."""
    if label not in FIELD_CLASSES:
        raise UnknownNameError(f"unknown cytoplasmic ANA field class {label!r}; expected one of {FIELD_CLASSES}")
    serum = _serum(label, rng, style)
    spread, gap = rng.uniform(1.4, 1.8), rng.uniform(4.0, 7.0)  # room for whole cells around the nuclei
    field_um, cells = ana._monolayer(rng, serum, style, spread=float(spread), gap_um=float(gap))
    _new_cells(rng, cells, serum, style)
    return {
        "label": label,
        "subtype": serum["subtype"],
        "titer": serum["titer"],
        "field_um": field_um,
        "cells": cells,
        **ana._optics(rng, style),
    }


# ==================================================================================================
# drawing
# ==================================================================================================


def _granule_points(cell: Cell) -> tuple[np.ndarray, np.ndarray]:
    """Seeded mitochondria (cell frame, µm): granules and short threads, denser near the nucleus."""
    gr, lv = cell["granules"], cell["levels"]
    g = np.random.default_rng(gr["seed"])
    body, shape = cell["body"], cell["nucleus"]
    pts = ana._body_to_cell(ana._shape_points(g, body, gr["n"], 0.0, 0.93), body)
    dist = _edge_distance(shape, pts)
    keep_p = lv["floor"] + (1.0 - lv["floor"]) * np.exp(-np.maximum(dist, 0.0) / lv["falloff_um"])
    keep = (dist > 0.25) & (g.random(len(pts)) < keep_p)
    pts, amp = pts[keep], g.uniform(0.45, 1.0, int(keep.sum()))
    thread = g.random(len(pts)) < gr["p_thread"]
    radial = np.arctan2(pts[:, 1], pts[:, 0])
    phi = np.where(
        g.random(len(pts)) < 0.5, radial + g.normal(0.0, 0.4, len(pts)), g.uniform(0, 2 * np.pi, len(pts))
    )
    steps = g.integers(1, 4, len(pts))
    parts, amps = [pts], [amp]
    for k in (1, 2, 3):  # up to three more granules 0.45 µm apart: a short thread
        more = thread & (steps >= k)
        parts.append(pts[more] + 0.45 * k * np.column_stack([np.cos(phi[more]), np.sin(phi[more])]))
        amps.append(0.8 * amp[more])
    return np.concatenate(parts), np.concatenate(amps)


def _edge_distance(shape: dict[str, Any], pts: np.ndarray) -> np.ndarray:
    """Radial distance (µm, positive outside) of cell-frame points from the nuclear outline."""
    u, v = pts[:, 0], pts[:, 1] / shape["aspect"]
    rho = np.hypot(u, v)
    stretch = np.hypot(pts[:, 0], pts[:, 1]) / np.maximum(rho, 1e-6)
    return (rho - ana._radius_at(shape, np.arctan2(v, u))) * stretch


def _perinuclear(cell: Cell, nuc: np.ndarray, ppu: float) -> np.ndarray:
    """Cytoplasm profile on the cell's window: 1 at the nucleus, falling to ``floor`` away from it."""
    lv = cell["levels"]
    outside = (nuc < 0.5).astype(np.uint8)
    dist = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) / np.float32(ppu)
    return (lv["floor"] + (1.0 - lv["floor"]) * np.exp(-dist / lv["falloff_um"])).astype(np.float32)


def _fibre_field(local: tuple[int, int], cell: Cell, px: Any, ppu: float) -> np.ndarray:
    """Straight Gaussian lines with soft ends: dense granules along each fibre, one blur per cell.

    A line keeps its total light when its sigma is below the 0.5 px floor (thin fibres at small sizes).
    """
    sigma = cell["fibre_sigma"] * ppu
    s = max(sigma, 0.5)
    step = min(0.5, 0.7 * s)  # granules this close merge into an even line
    end = max(0.8 * ppu, 1.0)
    fibres = cell["fibres"]
    if not fibres:
        return np.zeros(local, np.float32)
    ends = px([x for f in fibres for x in (f["a"], f["b"])]).reshape(-1, 2, 2)
    a, b = ends[:, 0], ends[:, 1]
    length = np.hypot(*(b - a).T)
    n = np.floor(length / step).astype(int) + 1
    which = np.repeat(np.arange(len(fibres)), n)
    t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) * step  # 0, step, ... along each fibre
    taper = np.clip(np.minimum(t, length[which] - t) / end, 0.0, 1.0)
    pts = a[which] + (t / np.maximum(length[which], 1e-6))[:, None] * (b - a)[which]
    amp = np.array([f["amp"] for f in fibres])[which] * taper
    peak = min(sigma / 0.5, 1.0) * step / (np.sqrt(2 * np.pi) * s)
    return d.granule_field(local, pts, amp * peak, s)


def _render_cell(
    cell: Cell, fr: d.Frame, tex: dict[str, np.ndarray], canvas: dict[str, np.ndarray]
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """Draw one cell: its stain where no earlier cell covers it; return window, nucleus and body masks."""
    ppu, size = fr.ppu, fr.size
    body, shape, lv = cell["body"], cell["nucleus"], cell["levels"]
    soft, body_soft = max(0.6, 0.12 * ppu), max(1.0, 1.2 * ppu)
    reach = (
        max(ana._reach(shape), float(np.hypot(*body["offset"])) + ana._reach(body)) * ppu + 2 * body_soft + 4
    )
    cx, cy = fr.xy(cell["center"])
    c0, c1 = max(int(cx - reach), 0), min(int(cx + reach) + 1, size)
    r0, r1 = max(int(cy - reach), 0), min(int(cy + reach) + 1, size)
    if c0 >= c1 or r0 >= r1:
        return None
    win = (slice(r0, r1), slice(c0, c1))
    local = (r1 - r0, c1 - c0)
    origin = np.array([c0, r0], float)

    def px(points: Any) -> np.ndarray:
        return fr.xy(ana._cell_to_field(points, cell)) - origin

    def blob(spec: dict[str, Any], centre: Any, angle: float, softness: float) -> np.ndarray:
        return d.polar_blob(
            local,
            centre,
            spec["radius"] * ppu,
            aspect=spec["aspect"],
            angle=angle,
            harmonics=spec["harmonics"],
            softness=softness,
        )

    centre_px = px([0.0, 0.0])[0]
    body_centre, body_angle = px(body["offset"])[0], cell["angle"] + body["angle"]
    body_mask = blob(body, body_centre, body_angle, body_soft)
    if cell["chains"]:
        nuc = d.union(
            *[
                d.capsule_chain(local, px(c["points"]), np.asarray(c["radii"]) * ppu, softness=soft)
                for c in cell["chains"]
            ]
        )
    else:
        nuc = blob(shape, centre_px, cell["angle"], soft)
    t_fine, t_cyto = tex["fine"][win], tex["cyto"][win]
    g = cell["gain"]
    if cell["pattern"] == "negative":
        cyto = cell["cyto_level"] * lv["diffuse"] * (1.0 + 0.3 * t_cyto)
    else:
        cyto = lv["diffuse"] * _perinuclear(cell, nuc, ppu) * (1.0 + 0.3 * t_cyto)
    if cell["granules"] is not None:
        pts, amp = _granule_points(cell)
        cyto = cyto + lv["granule"] * ana._granules(local, px(pts), amp, cell["granules"]["sigma"] * ppu)
    if cell["fibres"]:
        fib = _fibre_field(local, cell, px, ppu)
        cyto = cyto + lv["fibre"] * fib * np.maximum(1.0 + 0.35 * t_fine, 0.2)
    if lv["cortex"] > 0:
        k = 2 * max(round(1.2 * ppu), 1) + 1
        inner = cv2.erode(body_mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        rim = np.clip(body_mask - inner, 0.0, 1.0)
        boost = 1.6 if cell["phase"] != "interphase" else 1.0  # rounded mitotic cells: cortical actin
        cyto = cyto + boost * lv["cortex"] * rim * (1.0 + 0.3 * t_fine)
    weight = body_mask * (1.0 - canvas["cover"][win])  # earlier cells keep what they cover
    canvas["cover"][win] += weight
    canvas["cyto"][win] += weight * g * np.maximum(cyto, 0.0)
    nuc_level = lv["nucleus"] * (1.0 + lv["tex"] * t_fine)
    canvas["nuc"][win] += nuc * g * np.maximum(nuc_level, 0.0)
    canvas["occ"][win] = np.maximum(canvas["occ"][win], nuc)
    return win, nuc, body_mask


def _render(params: dict[str, Any], size: int, want_masks: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    shape = (size, size)
    fr = d.Frame(size, params["field_um"])
    tex = ana._textures(params, fr)
    canvas = {k: np.zeros(shape, np.float32) for k in ("cyto", "cover", "nuc", "occ")}
    drawn = [_render_cell(cell, fr, tex, canvas) for cell in params["cells"]]
    signal = canvas["cyto"] * (1.0 - canvas["occ"]) + canvas["nuc"]
    img = ana._camera(signal, params, fr)
    if not want_masks:
        return img, []
    # nuclei belong to their own cell; then each body takes what no earlier cell has taken
    claimed = np.zeros(shape, bool)
    nuclei: list[np.ndarray | None] = []
    for res in drawn:
        nucleus = None
        if res is not None:
            nucleus = (res[1] >= 0.5) & ~claimed[res[0]]
            claimed[res[0]] |= nucleus
        nuclei.append(nucleus)
    masks: list[np.ndarray] = []
    for cell, res, nucleus in zip(params["cells"], drawn, nuclei, strict=True):
        mask = np.zeros(shape, bool)
        if res is not None:
            mask[res[0]] = ((res[2] >= 0.5) & ~claimed[res[0]]) | nucleus
        cx, cy = np.clip(np.rint(fr.xy(cell["center"])), 0, size - 1).astype(int)
        if not mask.any() and not claimed[cy, cx]:
            mask[cy, cx] = True  # tiny output: keep one pixel so the object still has a box
        claimed |= mask
        masks.append(mask)
    return img, masks


def draw(params: dict[str, Any], size: int = 128) -> np.ndarray:
    """Render a single-cell parameter dict from :func:`sample_params` as ``uint8`` RGB ``size`` x ``size``."""
    return _render(params, size, want_masks=False)[0]


def draw_field(params: dict[str, Any], size: int = 512) -> tuple[np.ndarray, list[Instance]]:
    """Render a field from :func:`sample_field`; one :class:`Instance` per cell (body + nucleus)."""
    img, masks = _render(params, size, want_masks=True)
    fr = d.Frame(size, params["field_um"])
    instances = []
    for cell, mask in zip(params["cells"], masks, strict=True):
        x, y = fr.xy(cell["center"])
        instances.append(
            Instance(
                label="cell",
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


def _cell_um(cell: Cell) -> float:
    """Equivalent diameter (µm) of the sampled cell body."""
    body = cell["body"]
    return round(float(2 * body["radius"] * np.sqrt(body["aspect"])), 3)


def _cell_attrs(cell: Cell, pattern: str) -> dict[str, Any]:
    return {
        "pattern": pattern,
        "phase": cell["phase"],
        "intensity": round(cell["gain"], 4),
        "n_fibres": len(cell["fibres"]),
        "cell_um": _cell_um(cell),
    }


def truth(params: dict[str, Any], size: int) -> dict[str, Any]:
    """Per-crop truth: ICAP code, the target cell's phase, fibre count and size, titer, optics."""
    cell = params["cells"][0]
    fr = d.Frame(size, params["field_um"])
    shape = cell["nucleus"]
    return {
        "subtype": params["subtype"],
        "phase": cell["phase"],
        "mitotic": int(cell["phase"] != "interphase"),
        "n_fibres": len(cell["fibres"]),
        "titer": params["titer"],
        "intensity": round(cell["gain"], 4),
        "blur_sigma": round(params["blur_um"] * fr.ppu, 4),
        "field_um": round(params["field_um"], 3),
        "nucleus_um": round(float(2 * shape["radius"] * np.sqrt(shape["aspect"])), 3),
        "cell_um": _cell_um(cell),
        "n_neighbour_cells": len(params["cells"]) - 1,
        "rotation_deg": round(float(np.degrees(cell["angle"])) % 360.0, 2),
    }


field_truth = ana.field_truth  # the same per-field truth: counts, titer, brightness, optics


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
    name="ana-hep2-cyto",
    classes=CLASSES,
    description="ANA immunofluorescence on HEp-2 cells, cytoplasmic fibrillar (AC-15) / mitochondrial (AC-21); whole cells annotated",
    style_sampler=sample_style,
    param_sampler=sample_params,
    drawer=draw,
    truth_fn=truth,
    one_label_per_group=True,
    default_size=128,
    fields=FIELDS,
)
