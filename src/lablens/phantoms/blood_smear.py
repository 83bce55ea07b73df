"""Whole peripheral blood smear fields (monolayer area, May-Grünwald-Giemsa, brightfield).

The whole-field mode of the ``blood-cells`` task (``--fields``): a square field of view about
80–120 µm across, like a BCCD field but square, with red cells everywhere (mostly touching, some
overlapping), a few platelets (singles and small clumps) and 2–6 white cells. White cells are
enriched about a hundredfold over a real smear, where a field this size holds one white cell per
several fields, so that each field carries evidence about the sample-level label.

The field label is the patient's condition, which sets the white-cell differential:

* ``normal`` — neutrophils ~60 %, lymphocytes ~30 %, monocytes ~6 %, eosinophils ~3 %, basophils ~1 %;
* ``neutrophilia`` — neutrophils ~83 %, a few more band forms and the odd immature granulocyte;
* ``lymphocytosis`` — lymphocytes ~62 %;
* ``eosinophilia`` — eosinophils ~22 %;
* ``left_shift`` — immature granulocytes (promyelocytes, myelocytes, metamyelocytes) ~14 % and
  ~40 % of neutrophils are band forms, with occasional erythroblasts (a leukoerythroblastic touch).

Each field draws its own *true* proportions around the condition's mean (a Dirichlet draw, recorded
as ``frac_<class>`` in the truth) and then the class of every white cell from them, so a field's
observed counts are a small sample of its true differential, as in a real manual differential.

Every cell is built by the blood-cells samplers and drawn by the blood-cells drawing code; this
module lays out the field (red cells by the crops' dart throw, vectorised and run close to jamming)
and records its objects:

* white cells (label = their blood-cells class), ``may_overlap=False``: bodies never overlap;
* platelets, one object per single platelet or clump (label ``platelet``), ``may_overlap=False``;
* red cells (label ``rbc``), ``may_overlap=True``: they overlap each other and may lie under a
  white cell or a platelet; their masks are the whole disc (amodal).

Objects cut by the field edge are kept when at least :data:`MIN_VISIBLE` of their area lies inside
(computed from the µm geometry, so the decision does not depend on the output size), with masks
clipped to the image and ``truncated`` set in their attributes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from lablens.errors import UnknownNameError
from lablens.phantoms import draw as d
from lablens.phantoms.blood_cells import (
    BLUISH_WHITE,
    CELL_SAMPLERS,
    REFERENCE_WHITE,
    cell_reach,
    draw_cell,
    draw_platelets,
    draw_red_cells,
    platelet_fragments,
    stain_cell,
)
from lablens.phantoms.contract import Instance, PhantomFields

CLASSES: tuple[str, ...] = ("normal", "neutrophilia", "lymphocytosis", "eosinophilia", "left_shift")
WBC_CLASSES: tuple[str, ...] = (
    "basophil",
    "eosinophil",
    "erythroblast",
    "ig",
    "lymphocyte",
    "monocyte",
    "neutrophil",
)
INSTANCE_CLASSES: tuple[str, ...] = (*WBC_CLASSES, "platelet", "rbc")

FIELD_UM = 100.0  # side of the field of view in µm at magnification 1 (group style scales it ~83–117 µm)
MIN_VISIBLE = 0.4  # objects cut by the edge are annotated when at least this share of them is inside
WBC_COUNTS = (2, 3, 4, 5, 6)  # white cells per field (uniform)
WBC_GAP_UM = 0.8  # minimum clearance between white-cell outlines
PLATELET_GAP_UM = 0.5  # minimum clearance between a platelet object and any other non-overlapping object
DIRICHLET_CONCENTRATION = 80.0  # spread of a field's true differential around its condition's mean

# Mean white-cell differential per condition (each sums to 1; zero = absent).
DIFFERENTIALS: dict[str, dict[str, float]] = {
    "normal": {
        "neutrophil": 0.60,
        "lymphocyte": 0.30,
        "monocyte": 0.06,
        "eosinophil": 0.03,
        "basophil": 0.01,
    },
    "neutrophilia": {
        "neutrophil": 0.83,
        "lymphocyte": 0.10,
        "monocyte": 0.04,
        "eosinophil": 0.015,
        "basophil": 0.005,
        "ig": 0.01,
    },
    "lymphocytosis": {
        "neutrophil": 0.30,
        "lymphocyte": 0.62,
        "monocyte": 0.06,
        "eosinophil": 0.015,
        "basophil": 0.005,
    },
    "eosinophilia": {
        "neutrophil": 0.50,
        "lymphocyte": 0.22,
        "monocyte": 0.05,
        "eosinophil": 0.22,
        "basophil": 0.01,
    },
    "left_shift": {
        "neutrophil": 0.575,
        "ig": 0.14,
        "lymphocyte": 0.17,
        "monocyte": 0.07,
        "eosinophil": 0.02,
        "basophil": 0.005,
        "erythroblast": 0.02,
    },
}
# Share of neutrophils that are band forms (the rest segmented), per condition.
BAND_FRACTION: dict[str, float] = {
    "normal": 0.05,
    "neutrophilia": 0.12,
    "lymphocytosis": 0.05,
    "eosinophilia": 0.05,
    "left_shift": 0.40,
}

_PLATELET_OBJECTS = (2, 3, 4, 5, 6, 7, 8)  # platelet objects (singles or clumps) per field (uniform)
_CLUMP_SHARE = 0.3  # share of platelet objects that are clumps of 2–6 fragments
# Red-cell centres keep ``factor x reach + 0.45 r`` away from a white cell or platelet object, so red
# cells touch white cells and tuck a little under their edges; platelets often lie on red cells.
_WBC_KEEP_OUT = 0.8
_PLATELET_KEEP_OUT = 0.4

# ==================================================================================================
# geometry: share of an outline inside the field (µm, deterministic quadrature)
# ==================================================================================================

_RHO = (np.arange(12) + 0.5) / 12.0
_THETA = (np.arange(96) + 0.5) * (2.0 * np.pi / 96.0)


def _inside_field(
    centers: np.ndarray,
    radii: np.ndarray,
    aspects: np.ndarray,
    angles: np.ndarray,
    half: float,
    harmonics: list[Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Area share inside the square ``[-half, half]^2`` of each outline, and whether it crosses the edge.

    The outline is :func:`lablens.phantoms.draw.polar_blob`'s: radius ``r(t)`` (Fourier
    harmonics, shared by all rows when given) in the ellipse's own frame, minor axis squashed by
    ``aspect``, rotated by ``angle``. A fixed polar grid weighted by its area element integrates
    the share; the outline itself (``rho = 1``) decides the crossing. Everything is in µm, so
    neither depends on the output size.
    """
    c = np.asarray(centers, float).reshape(-1, 2)
    mod = np.ones_like(_THETA)
    for k, amp, phase in np.asarray(harmonics if harmonics is not None else [], float).reshape(-1, 3):
        mod = mod + amp * np.cos(k * _THETA + phase)
    r = np.broadcast_to(np.asarray(radii, float), (len(c),))
    share, crosses = np.ones(len(c)), np.zeros(len(c), bool)
    # only outlines whose bounding circle reaches the edge need the quadrature
    near = (np.abs(c) + (r * float(mod.max()))[:, None] > half).any(axis=1)
    if not near.any():
        return share, crosses
    c = c[near]
    rad = r[near].reshape(-1, 1, 1) * mod[None, None, :]  # (N, 1, T)
    asp = np.broadcast_to(np.asarray(aspects, float), near.shape)[near].reshape(-1, 1, 1)
    ang = np.broadcast_to(np.asarray(angles, float), near.shape)[near].reshape(-1, 1, 1)
    rho = np.append(_RHO, 1.0)[None, :, None]  # the last ring is the outline
    u = rho * rad * np.cos(_THETA)[None, None, :]
    v = rho * rad * np.sin(_THETA)[None, None, :] * asp
    x = c[:, 0, None, None] + u * np.cos(ang) - v * np.sin(ang)
    y = c[:, 1, None, None] + u * np.sin(ang) + v * np.cos(ang)
    inside = (np.abs(x) <= half) & (np.abs(y) <= half)
    w = np.broadcast_to(rho[:, :-1] * rad**2, inside[:, :-1].shape)
    part = (w * inside[:, :-1]).sum(axis=(1, 2)) / w.sum(axis=(1, 2))
    cut = ~inside.all(axis=(1, 2))
    share[near] = np.where(cut, np.minimum(part, 0.999), 1.0)
    crosses[near] = cut
    return share, crosses


def _blob_inside(shape: dict[str, Any], half: float) -> tuple[float, bool]:
    share, crosses = _inside_field(
        np.asarray(shape["center"], float),
        np.array([shape["radius"]]),
        np.array([shape["aspect"]]),
        np.array([shape["angle"]]),
        half,
        shape["harmonics"],
    )
    return float(share[0]), bool(crosses[0])


def _clump_inside(frags: list[dict[str, Any]], half: float) -> tuple[float, bool]:
    """Area-weighted visible share of a platelet object (fragment overlaps ignored), and the crossing."""
    areas = np.array([f["radius"] ** 2 * f["aspect"] for f in frags])
    shares, crosses = zip(*(_blob_inside(f, half) for f in frags), strict=True)
    return float((areas * np.array(shares)).sum() / areas.sum()), any(crosses)


def _frag_reach(f: dict[str, Any]) -> float:
    return float(f["radius"] * (1.0 + sum(abs(h[1]) for h in f["harmonics"])))


def _clump_extent(frags: list[dict[str, Any]]) -> tuple[np.ndarray, float]:
    """Centre (mean of fragment centres) and radius of a circle holding every fragment outline."""
    centres = np.array([f["center"] for f in frags], float)
    mid = centres.mean(axis=0)
    far = max(float(np.hypot(*(c - mid))) + _frag_reach(f) for c, f in zip(centres, frags, strict=True))
    return mid, far


def _clear(x: float, y: float, r: float, placed: list[tuple[float, float, float]], gap: float) -> bool:
    return all(np.hypot(x - px, y - py) >= r + pr + gap for px, py, pr in placed)


# ==================================================================================================
# parameters
# ==================================================================================================


def _differential(label: str, rng: np.random.Generator) -> dict[str, float]:
    """This field's true white-cell proportions: a Dirichlet draw around the condition's mean."""
    mean = DIFFERENTIALS[label]
    present = [c for c in WBC_CLASSES if mean.get(c, 0.0) > 0]
    draw = rng.dirichlet([DIRICHLET_CONCENTRATION * mean[c] for c in present])
    # a Dirichlet component with a tiny parameter can underflow to exactly 0; keep a floor and renormalise
    draw = np.maximum(draw, 1e-6)
    draw = draw / draw.sum()
    fracs = dict.fromkeys(WBC_CLASSES, 0.0)
    fracs.update({c: float(p) for c, p in zip(present, draw, strict=True)})
    return fracs


def _white_cell(
    kind: str, rng: np.random.Generator, style: dict[str, float], band_frac: float
) -> tuple[dict[str, Any], str]:
    """One white cell from the blood-cells samplers; neutrophils are band forms with ``band_frac``."""
    if kind != "neutrophil":
        return CELL_SAMPLERS[kind](rng, style)
    want = "band" if rng.random() < band_frac else "segmented"
    for _ in range(200):  # the sampler's own band share is ~15 %: a few draws find either form
        cell, subtype = CELL_SAMPLERS[kind](rng, style)
        if subtype == want:
            break
    return cell, subtype


def _place_white_cells(
    rng: np.random.Generator, style: dict[str, float], fracs: dict[str, float], band_frac: float, half: float
) -> list[dict[str, Any]]:
    kinds = list(fracs)
    p = np.array([fracs[k] for k in kinds])
    n = int(rng.choice(WBC_COUNTS))
    placed: list[tuple[float, float, float]] = []
    cells: list[dict[str, Any]] = []
    for _ in range(n):
        kind = str(rng.choice(kinds, p=p / p.sum()))
        cell, subtype = _white_cell(kind, rng, style, band_frac)
        cell["angle"] = float(rng.uniform(0, 2 * np.pi))
        reach = cell_reach(cell)
        for _attempt in range(60):
            xy = rng.uniform(-half, half, 2)
            if not _clear(float(xy[0]), float(xy[1]), reach, placed, WBC_GAP_UM):
                continue
            cell["center"] = xy.tolist()
            visible, cut = _blob_inside(cell, half)
            if visible >= MIN_VISIBLE:
                break
        else:
            continue  # no room left for this one: the field holds fewer white cells
        cell.update(kind=kind, subtype=subtype, visible=visible, truncated=cut)
        placed.append((float(xy[0]), float(xy[1]), reach))
        cells.append(cell)
    return cells


def _place_platelets(
    rng: np.random.Generator, style: dict[str, float], half: float, taken: list[tuple[float, float, float]]
) -> list[dict[str, Any]]:
    placed = list(taken)
    objects: list[dict[str, Any]] = []
    for _ in range(int(rng.choice(_PLATELET_OBJECTS))):
        clump = rng.random() < _CLUMP_SHARE
        n = int(rng.integers(2, 7)) if clump else 1
        frags = platelet_fragments(rng, style, n, np.zeros(2), 1.0)
        mid, extent = _clump_extent(frags)
        for _attempt in range(60):
            shift = rng.uniform(-half, half, 2) - mid
            x, y = float(mid[0] + shift[0]), float(mid[1] + shift[1])
            if not _clear(x, y, extent, placed, PLATELET_GAP_UM):
                continue
            moved = [{**f, "center": (np.asarray(f["center"]) + shift).tolist()} for f in frags]
            visible, cut = _clump_inside(moved, half)
            if visible >= MIN_VISIBLE:
                break
        else:
            continue
        placed.append((x, y, extent))
        objects.append(
            {
                "fragments": moved,
                "center": [x, y],
                "extent": extent,
                "subtype": "clump" if clump else "single",
                "visible": visible,
                "truncated": cut,
            }
        )
    return objects


def _greedy_packing(points: np.ndarray, radii: np.ndarray, factor: float) -> np.ndarray:
    """Which candidates a sequential dart throw keeps: each in turn unless it clashes with one kept before.

    Two discs clash when their centres are closer than ``factor * (r_i + r_j)``. The result is that
    of the one-by-one loop in :func:`lablens.phantoms.blood_cells.sample_red_cells` (without its
    count cap), computed in a few vectorised rounds over the clashing pairs (a candidate is kept
    once every earlier clashing one is dropped, dropped once an earlier clashing one is kept), so
    thousands of candidates cost milliseconds instead of a quadratic loop.
    """
    n = len(points)
    pairs = cKDTree(points).query_pairs(factor * 2.0 * float(radii.max()), output_type="ndarray")
    lo, hi = pairs[:, 0], pairs[:, 1]  # lo < hi
    near = np.hypot(*(points[lo] - points[hi]).T) < factor * (radii[lo] + radii[hi])
    lo, hi = lo[near], hi[near]
    state = np.zeros(n, np.int8)  # 0 undecided, 1 kept, -1 dropped
    while (state == 0).any():
        blocking = np.bincount(hi[state[lo] != -1], minlength=n)
        state[(state == 0) & (blocking == 0)] = 1
        drop = hi[state[lo] == 1]
        state[drop[state[drop] == 0]] = -1
    return state == 1


def _monolayer(
    rng: np.random.Generator,
    style: dict[str, float],
    keep_out: list[tuple[float, float, float]],
    field_um: float,
) -> dict[str, Any]:
    """Red cells of a monolayer area, in the format of :func:`blood_cells.sample_red_cells`.

    The same dart throw as the crops' background (discs may overlap down to ``overlap`` times the
    sum of radii, centres keep off ``keep_out`` circles), run with enough candidates to come close
    to jamming, so that most red cells touch a neighbour and some overlap. The group style's
    ``rbc_density`` (0.3–0.75) sets how close to jamming a slide's monolayer comes.
    """
    half = field_um / 2 + 4.0
    mean_r = style["rbc_diameter_um"] / 2
    overlap = rng.uniform(0.7, 0.9)
    per_disc = 3.0 + 6.0 * float(np.clip((style["rbc_density"] - 0.3) / 0.45, 0.0, 1.0))
    n = int(per_disc * rng.uniform(0.85, 1.15) * (2 * half) ** 2 / (np.pi * mean_r**2))
    cand = rng.uniform(-half, half, (n, 2))
    radii = mean_r * rng.normal(1.0, 0.05, n)
    away = np.ones(n, bool)
    for kx, ky, kr in keep_out:
        away &= np.hypot(cand[:, 0] - kx, cand[:, 1] - ky) > kr + 0.45 * radii
    cand, radii = cand[away], radii[away]
    chosen = _greedy_packing(cand, radii, overlap) if len(cand) else np.zeros(0, bool)
    k = int(chosen.sum())
    return {
        "centers": cand[chosen].tolist(),
        "radii": radii[chosen].tolist(),
        "aspects": rng.uniform(0.86, 1.0, k).tolist(),
        "angles": rng.uniform(0, np.pi, k).tolist(),
        "pallor": np.clip(style["rbc_pallor"] + rng.normal(0.0, 0.08, k), 0.05, 0.9).tolist(),
        "pallor_radius": float(rng.uniform(0.42, 0.55)),
        "od": stain_cell("rbc", style, rng, 0.1),
    }


def sample_params(label: str, rng: np.random.Generator, style: dict[str, float]) -> dict[str, Any]:
    """Draw every random quantity of one field; :func:`draw` renders it deterministically."""
    if label not in CLASSES:
        raise UnknownNameError(f"unknown blood-smear field class {label!r}; expected one of {CLASSES}")
    field_um = FIELD_UM / (style["magnification"] * rng.uniform(0.9, 1.1))
    half = field_um / 2
    fracs = _differential(label, rng)
    band_frac = float(np.clip(BAND_FRACTION[label] + rng.normal(0.0, 0.03), 0.0, 1.0))
    wbcs = _place_white_cells(rng, style, fracs, band_frac, half)
    taken = [(c["center"][0], c["center"][1], cell_reach(c)) for c in wbcs]
    platelets = _place_platelets(rng, style, half, taken)
    keep_out = [(x, y, _WBC_KEEP_OUT * r) for x, y, r in taken]
    keep_out += [(p["center"][0], p["center"][1], _PLATELET_KEEP_OUT * p["extent"]) for p in platelets]
    rbc = _monolayer(rng, style, keep_out, field_um)
    share, cut = _inside_field(
        np.asarray(rbc["centers"]).reshape(-1, 2),
        np.asarray(rbc["radii"]),
        np.asarray(rbc["aspects"]),
        np.asarray(rbc["angles"]),
        half,
    )
    rbc["visible"], rbc["truncated"] = share.tolist(), cut.tolist()
    tint = style["background_tint"]
    white = np.array(REFERENCE_WHITE) * (1 - tint) + np.array(BLUISH_WHITE) * tint
    return {
        "label": label,
        "field_um": float(field_um),
        "fracs": fracs,
        "band_frac": band_frac,
        "wbcs": wbcs,
        "platelets": platelets,
        "rbc": rbc,
        "illumination": (white / 255.0 * style["exposure"] * rng.uniform(0.93, 1.07)).tolist(),
        "smear_thickness": float(rng.uniform(0.85, 1.15)),
        "vignette": float(rng.uniform(0.0, 0.04)),
        "vignette_seed": int(rng.integers(2**31)),
        "blur_um": float(style["focus_blur_um"] + abs(rng.normal(0.0, 0.06))),
        "noise_read": float(style["noise_level"] * rng.uniform(0.8, 1.25)),
        "noise_shot": float(rng.uniform(0.0002, 0.0015)),
        "noise_seed": int(rng.integers(2**31)),
    }


# ==================================================================================================
# drawing
# ==================================================================================================


class _Window(d.Frame):
    """A frame that draws into the image window whose top-left pixel is ``(x0, y0)``."""

    def __init__(self, fr: d.Frame, x0: int, y0: int) -> None:
        super().__init__(fr.size, fr.size / fr.ppu)
        self.ppu = fr.ppu
        self.origin = np.array([x0, y0], float)

    def xy(self, p: Any) -> np.ndarray:
        return super().xy(p) - self.origin


def _local(fr: d.Frame, centre_um: Any, reach_um: float) -> tuple[slice, slice, d.Frame] | None:
    """The image window around an object and a frame drawing into it (same scale, shifted origin)."""
    cx, cy = fr.xy(centre_um)
    reach = reach_um * fr.ppu + 3.0
    x0, x1 = max(int(np.floor(cx - reach)), 0), min(int(np.ceil(cx + reach)) + 1, fr.size)
    y0, y1 = max(int(np.floor(cy - reach)), 0), min(int(np.ceil(cy + reach)) + 1, fr.size)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1), _Window(fr, x0, y0)


def _wbc_body(shape: tuple[int, int], fr: d.Frame, cell: dict[str, Any]) -> np.ndarray:
    """The cell-body mask exactly as :func:`blood_cells.draw_cell` draws it."""
    return d.polar_blob(
        shape,
        fr.xy(cell["center"]),
        cell["radius"] * fr.ppu,
        aspect=cell["aspect"],
        angle=cell["angle"],
        harmonics=cell["harmonics"],
        softness=max(0.7, 0.1 * fr.ppu),
    )


def _platelet_body(shape: tuple[int, int], fr: d.Frame, frags: list[dict[str, Any]]) -> np.ndarray:
    """Union of fragment bodies exactly as :func:`blood_cells.draw_platelets` draws them."""
    soft = max(0.6, 0.1 * fr.ppu)
    bodies = [
        d.polar_blob(
            shape,
            fr.xy(f["center"]),
            f["radius"] * fr.ppu,
            aspect=f["aspect"],
            angle=f["angle"],
            harmonics=f["harmonics"],
            softness=soft,
        )
        for f in frags
    ]
    return d.union(*bodies)


def _fill_rbc_mask(mask: np.ndarray, fr: d.Frame, rbc: dict[str, Any], i: int) -> None:
    """Set disc ``i`` of :func:`lablens.phantoms.draw.pallor_discs` (inside the half-way line of its edge ramp)."""
    cx, cy = fr.xy(rbc["centers"][i])
    r = rbc["radii"][i] * fr.ppu
    h, w = mask.shape
    x0, x1 = max(int(np.floor(cx - r - 1)), 0), min(int(np.ceil(cx + r + 1)) + 1, w)
    y0, y1 = max(int(np.floor(cy - r - 1)), 0), min(int(np.ceil(cy + r + 1)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    ca, sa = np.cos(rbc["angles"][i]), np.sin(rbc["angles"][i])
    u = dx * ca + dy * sa
    v = (-dx * sa + dy * ca) / max(rbc["aspects"][i], 1e-3)
    mask[y0:y1, x0:x1] = u * u + v * v <= r * r


def _attrs(subtype: str, visible: float, truncated: bool) -> dict[str, Any]:
    return {"subtype": subtype, "truncated": bool(truncated), "visible_frac": round(float(visible), 3)}


def draw(params: dict[str, Any], size: int = 512) -> tuple[np.ndarray, list[Instance]]:
    """Render a field from :func:`sample_params`: ``uint8`` RGB image and one :class:`Instance` per object."""
    shape = (size, size)
    fr = d.Frame(size, params["field_um"])
    seed_mix = size * 7_919  # textures are resampled per output size; geometry is not
    rbc = params["rbc"]
    od = draw_red_cells(shape, fr, rbc)
    instances: list[Instance] = []
    platelet_instances: list[Instance] = []
    for p in params["platelets"]:
        mask = np.zeros(shape, bool)
        win = _local(fr, p["center"], p["extent"] + 0.5)
        if win is not None:
            rs, cs, sub = win
            local = (rs.stop - rs.start, cs.stop - cs.start)
            od[rs, cs] += draw_platelets(local, sub, p["fragments"])
            mask[rs, cs] = _platelet_body(local, sub, p["fragments"]) >= 0.5
        platelet_instances.append(
            Instance(
                "platelet",
                mask,
                tuple(fr.xy(p["center"]).tolist()),
                False,
                _attrs(p["subtype"], p["visible"], p["truncated"]),
            )
        )
    for i, cell in enumerate(params["wbcs"]):
        mask = np.zeros(shape, bool)
        # basophil granules may lie just outside the body, granules blur by ~3 sigma: a generous window
        win = _local(fr, cell["center"], 1.2 * cell_reach(cell) + 1.0)
        if win is not None:
            rs, cs, sub = win
            local = (rs.stop - rs.start, cs.stop - cs.start)
            od[rs, cs] += draw_cell(local, sub, cell, seed_mix + 101 * (i + 1))
            mask[rs, cs] = _wbc_body(local, sub, cell) >= 0.5
        instances.append(
            Instance(
                cell["kind"],
                mask,
                tuple(fr.xy(cell["center"]).tolist()),
                False,
                _attrs(cell["subtype"], cell["visible"], cell["truncated"]),
            )
        )
    instances += platelet_instances
    kept = [i for i, visible in enumerate(rbc["visible"]) if visible >= MIN_VISIBLE]
    rbc_masks = np.zeros((len(kept), *shape), bool)  # one allocation; each instance holds a view
    for mask, i in zip(rbc_masks, kept, strict=True):
        _fill_rbc_mask(mask, fr, rbc, i)
        instances.append(
            Instance(
                "rbc",
                mask,
                tuple(fr.xy(rbc["centers"][i]).tolist()),
                True,
                _attrs("rbc", rbc["visible"][i], rbc["truncated"][i]),
            )
        )
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
    return d.to_uint8(img), instances


# ==================================================================================================
# truth
# ==================================================================================================


def truth(params: dict[str, Any], size: int) -> dict[str, Any]:
    """Per-field scalar truth: object counts (equal to the instances per label), differential, optics."""
    fr = d.Frame(size, params["field_um"])
    kinds = [c["kind"] for c in params["wbcs"]]
    out: dict[str, Any] = {
        "n_wbc": len(kinds),
        "n_rbc": sum(v >= MIN_VISIBLE for v in params["rbc"]["visible"]),
        "n_platelets": len(params["platelets"]),
        "n_platelet_fragments": sum(len(p["fragments"]) for p in params["platelets"]),
        "blur_sigma": round(params["blur_um"] * fr.ppu, 4),
        "field_um": round(params["field_um"], 3),
        "noise_sigma": round(params["noise_read"], 5),
        "smear_thickness": round(params["smear_thickness"], 4),
        "band_frac": round(params["band_frac"], 4),
    }
    out.update({f"frac_{c}": round(params["fracs"][c], 4) for c in WBC_CLASSES})
    out.update({f"n_{c}": kinds.count(c) for c in WBC_CLASSES})
    return out


FIELDS = PhantomFields(
    classes=CLASSES,
    instance_classes=INSTANCE_CLASSES,
    sampler=sample_params,
    drawer=draw,
    truth_fn=truth,
    default_size=512,
    one_label_per_group=True,
)
