"""Synthetic neutrophil-inclusion phantoms: the seven cytoplasm classes of the NeuNN study.

Every image is a May-Grünwald-Giemsa crop centred on one segmented neutrophil on a red-cell background,
with the look of the ``blood-cells`` task (same stain model, red cells, neutrophil nucleus and granules:
this module reuses :mod:`lablens.phantoms.blood_cells`). The class is what the cytoplasm holds:

* ``neu``: normal neutrophil, fine lilac granules, no inclusion;
* ``hyp``: hypogranular (dysplastic): pale, agranular or nearly clear cytoplasm, sometimes a
  pseudo-Pelger bilobed nucleus;
* ``cry``: cryoglobulin: pale blue-grey homogeneous globules or angular crystals that push the
  granules aside, sometimes one large one;
* ``db``: Döhle bodies: one to a few pale blue irregular patches at the periphery of the cytoplasm,
  often with toxic granulation and vacuoles;
* ``hjbli``: Howell-Jolly-body-like inclusions: one or two small dense dark purple round dots;
* ``gbi``: green-blue inclusions ("death crystals"): small bright blue-green refractile globules;
* ``bac``: phagocytosed bacteria, rods and/or cocci, dark blue-purple, mostly inside clear vacuoles,
  often with toxic granulation.

Inclusions are small next to the field (a few µm² in a ~25 µm field) and share stain variation with
everything else, so colour alone is a weak cue; a classifier has to find and recognise them. As in
``blood-cells``, :func:`sample_params` draws every random number (geometry in µm, cell frame) and
:func:`draw` renders deterministically at any size. A synthetic patient (group) carries one class.
"""

from __future__ import annotations

import itertools
from typing import Any

import cv2
import numpy as np

from lablens.errors import UnknownNameError
from lablens.phantoms import blood_cells as bc
from lablens.phantoms import draw as d
from lablens.phantoms.contract import Phantom

CLASSES: tuple[str, ...] = ("neu", "hyp", "cry", "db", "hjbli", "gbi", "bac")

FIELD_UM = 18.0  # side of the field of view in µm at magnification 1: a tight crop around one neutrophil

# Inclusion colours as they look on the blood-cells reference background (RGB) and how "azure" each
# is (see ``blood_cells._COMPONENTS``): the group's stain hue, intensity and balance act on them too.
_INCLUSIONS: dict[str, tuple[tuple[float, float, float], float]] = {
    "dohle": ((150, 164, 212), 1.0),
    "cryoglobulin": ((162, 174, 214), 0.75),
    "hj_body": ((66, 28, 118), 0.85),
    "green_blue": ((72, 196, 178), 0.6),
    "bacteria": ((58, 44, 128), 0.9),
    "toxic_granules": ((112, 54, 128), 0.7),
}

# ==================================================================================================
# style (per group)
# ==================================================================================================


def sample_style(rng: np.random.Generator) -> dict[str, float]:
    """Sample a synthetic patient / slide: the ``blood-cells`` style plus the patient's granularity.

    Returns:
        The keys of :func:`blood_cells.sample_style` and ``granularity`` (0.75..1.25, how densely
        this patient's neutrophils are granulated; hypogranular cells stay far below any value).
    """
    style = bc.sample_style(rng)
    style["granularity"] = float(rng.uniform(0.75, 1.25))
    return style


def _image_style(rng: np.random.Generator, style: dict[str, float]) -> dict[str, float]:
    """The group's style with per-image jitter (smear thickness and staining vary across a slide).

    Within-group spread is a sizeable share of the between-group spread, so a patient's stain is no
    fingerprint that a classifier could tie to the patient's (single) class.
    """
    s = dict(style)
    s["stain_hue"] = style["stain_hue"] + float(rng.normal(0.0, 0.45))
    s["stain_intensity"] = style["stain_intensity"] * float(rng.uniform(0.88, 1.12))
    s["stain_balance"] = float(np.clip(style["stain_balance"] + rng.normal(0.0, 0.45), -1.3, 1.3))
    s["background_tint"] = float(np.clip(style["background_tint"] + rng.normal(0.0, 0.15), 0.0, 1.0))
    s["exposure"] = style["exposure"] * float(rng.uniform(0.95, 1.05))
    s["focus_blur_um"] = max(0.02, style["focus_blur_um"] + float(rng.normal(0.0, 0.05)))
    s["rbc_density"] = float(np.clip(style["rbc_density"] * rng.uniform(0.8, 1.2), 0.2, 0.85))
    s["rbc_pallor"] = float(np.clip(style["rbc_pallor"] + rng.normal(0.0, 0.1), 0.25, 0.9))
    return s


# ==================================================================================================
# sampling helpers (µm, cell frame; all take the rng explicitly)
# ==================================================================================================


def _stain(name: str, style: dict[str, float], rng: np.random.Generator, jitter: float = 0.12) -> list[float]:
    """Optical density of an inclusion colour under this group's stain (as ``blood_cells.stain_cell``)."""
    rgb, azure = _INCLUSIONS[name]
    od = d.optical_density(rgb, bc.REFERENCE_WHITE)
    balance = 1.0 + 0.35 * style["stain_balance"] * (2.0 * azure - 1.0)
    od = od * style["stain_intensity"] * balance * rng.uniform(1.0 - jitter, 1.0 + jitter)
    od = d.rotate_hue(od, style["stain_hue"] * bc.HUE_RANGE + rng.normal(0.0, 0.06))
    return [float(v) for v in np.maximum(od, 0.0)]


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each of ``points`` (N, 2) to the segment ``a``-``b``."""
    e = b - a
    t = np.clip(((points - a) @ e) / max(float(e @ e), 1e-9), 0.0, 1.0)
    return np.hypot(*(points - a - t[:, None] * e).T)


def _nuclear_clearance(cell: dict[str, Any], points: np.ndarray) -> np.ndarray:
    """Conservative distance (µm) from cell-frame points to the nucleus (lobes, strands, band chain)."""
    best = np.full(len(points), np.inf)
    lobes = cell["lobes"]
    for lobe in lobes:
        reach = lobe["radius"] * (1.0 + sum(abs(h[1]) for h in lobe["harmonics"]))
        best = np.minimum(best, np.hypot(*(points - np.asarray(lobe["center"])).T) - reach)
    if cell["strand_radius"] > 0:
        for a, b in itertools.pairwise(lobes):
            seg = _segment_distance(points, np.asarray(a["center"]), np.asarray(b["center"]))
            best = np.minimum(best, seg - cell["strand_radius"])
    for chain in cell["chains"]:
        pts, radii = np.asarray(chain["points"]), np.asarray(chain["radii"])
        for i in range(len(pts) - 1):
            seg = _segment_distance(points, pts[i], pts[i + 1])
            best = np.minimum(best, seg - max(radii[i], radii[i + 1]))
    return best


def _place(
    rng: np.random.Generator,
    cell: dict[str, Any],
    size_um: float,
    band: tuple[float, float],
    taken: list[tuple[float, float, float]],
    n_candidates: int = 64,
) -> list[float]:
    """A cytoplasm position (cell frame) for an object of radius ``size_um``.

    Candidates lie at relative radius ``band`` of the cell ellipse (cut so the object stays inside
    the membrane); the first one clear of the nucleus and of ``taken`` circles wins, else the one
    with the most room.
    """
    r, aspect = cell["radius"], cell["aspect"]
    hi = min(band[1], 0.9 - size_um / r)
    lo = min(band[0], hi)
    t = rng.uniform(0.0, 2 * np.pi, n_candidates)
    q = rng.uniform(lo, hi, n_candidates)
    pts = np.column_stack([q * r * np.cos(t), q * r * aspect * np.sin(t)])
    room = _nuclear_clearance(cell, pts) - size_um
    for x, y, rad in taken:
        room = np.minimum(room, np.hypot(pts[:, 0] - x, pts[:, 1] - y) - rad - size_um)
    ok = np.nonzero(room >= 0.25)[0]
    i = int(ok[0]) if len(ok) else int(np.argmax(room))
    return [float(pts[i, 0]), float(pts[i, 1])]


def _blob(
    center: list[float],
    radius: float,
    od: list[float],
    density: float,
    *,
    aspect: float = 1.0,
    angle: float = 0.0,
    harmonics: list[list[float]] | None = None,
    displace: float = 0.0,
    highlight: float = 0.0,
) -> dict[str, Any]:
    """An inclusion drawn as a perturbed ellipse (optionally with a refractile bright centre)."""
    return {
        "shape": "blob",
        "center": center,
        "radius": float(radius),
        "aspect": float(aspect),
        "angle": float(angle),
        "harmonics": harmonics or [],
        "od": od,
        "density": float(density),
        "displace": float(displace),
        "highlight": float(highlight),
    }


def _vacuole(rng: np.random.Generator, cell: dict[str, Any], radius: tuple[float, float]) -> None:
    """Add one clear vacuole to the cytoplasm (``blood_cells`` draws ``cell["vacuoles"]``)."""
    rad = float(rng.uniform(*radius))
    taken = [(*v["center"], v["radius"]) for v in cell["vacuoles"]]
    cell["vacuoles"].append({"center": _place(rng, cell, rad, (0.3, 0.85), taken), "radius": rad})


def _toxic_granulation(rng: np.random.Generator, style: dict[str, float], cell: dict[str, Any]) -> None:
    """Coarser, darker (azurophilic) granules: the toxic change of infection and inflammation."""
    g = cell["granules"][0]
    g["od"] = _stain("toxic_granules", style, rng, 0.2)
    g["sigma_um"] = float(rng.uniform(0.24, 0.28))
    g["amp"] = rng.uniform(0.12, 0.42, len(g["points"])).tolist()
    cell["toxic"] = True


def _scale_granules(rng: np.random.Generator, cell: dict[str, Any], keep: float) -> None:
    """Keep a random ``keep`` share of the cell's granules."""
    g = cell["granules"][0]
    n = len(g["points"])
    idx = np.sort(rng.permutation(n)[: round(keep * n)])
    g["points"] = [g["points"][i] for i in idx]
    g["amp"] = [g["amp"][i] for i in idx]


# ==================================================================================================
# per-class inclusion samplers: modify the neutrophil in place, return (subtype, inclusions)
# ==================================================================================================

Inclusions = list[dict[str, Any]]


def _neu(rng: np.random.Generator, style: dict[str, float], cell: dict[str, Any]) -> tuple[str, Inclusions]:
    if rng.random() < 0.12:
        _vacuole(rng, cell, (0.35, 0.7))
    return ("band" if cell["chains"] else "segmented"), []


def _hyp(rng: np.random.Generator, style: dict[str, float], cell: dict[str, Any]) -> tuple[str, Inclusions]:
    agranular = rng.random() < 0.45
    _scale_granules(rng, cell, rng.uniform(0.0, 0.03) if agranular else rng.uniform(0.05, 0.12))
    cell["cyto_od"] = [v * rng.uniform(0.45, 0.8) for v in cell["cyto_od"]]
    cell["texture"] = float(rng.uniform(0.05, 0.15))
    if rng.random() < 0.3:  # pseudo-Pelger nucleus, common in the same dysplastic cells
        cell["chains"] = []
        cell["lobes"] = bc.sample_lobes(rng, 2, (2.1, 2.7), (0.4, 1.3), cell["radius"], (0.65, 0.95))
        cell["strand_radius"] = float(rng.uniform(0.15, 0.25))
    if rng.random() < 0.1:
        _vacuole(rng, cell, (0.35, 0.7))
    return ("agranular" if agranular else "hypogranular"), []


def _cry(rng: np.random.Generator, style: dict[str, float], cell: dict[str, Any]) -> tuple[str, Inclusions]:
    od = _stain("cryoglobulin", style, rng)
    u = rng.random()
    subtype = "large" if u < 0.25 else "angular" if u < 0.6 else "globular"
    n = 1 if subtype == "large" else int(rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.2, 0.15]))
    taken: list[tuple[float, float, float]] = []
    out: Inclusions = []
    for _ in range(n):
        radius = float(rng.uniform(1.8, 2.5) if subtype == "large" else rng.uniform(1.0, 1.5))
        center = _place(rng, cell, radius, (0.35, 0.8), taken)
        taken.append((*center, radius))
        density = float(rng.uniform(1.4, 1.9))
        displace = float(rng.uniform(0.8, 0.95))
        if subtype == "angular":
            k = int(rng.integers(4, 7))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k) + np.arange(k) * 2 * np.pi / k) % (2 * np.pi)
            elong = rng.uniform(0.45, 0.9)
            rot = rng.uniform(0, np.pi)
            rad = radius * rng.uniform(0.8, 1.15, k)
            x, y = rad * np.cos(ang), elong * rad * np.sin(ang)
            pts = np.column_stack(
                [x * np.cos(rot) - y * np.sin(rot), x * np.sin(rot) + y * np.cos(rot)]
            ) + np.asarray(center)
            out.append(
                {
                    "shape": "poly",
                    "points": pts.tolist(),
                    "od": od,
                    "density": density,
                    "displace": displace,
                    "highlight": 0.0,
                }
            )
        else:
            out.append(
                _blob(
                    center,
                    radius,
                    od,
                    density,
                    aspect=float(rng.uniform(0.7, 1.0)),
                    angle=float(rng.uniform(0, np.pi)),
                    harmonics=bc.outline_harmonics(rng, 0.04, 4),
                    displace=displace,
                )
            )
    return subtype, out


def _db(rng: np.random.Generator, style: dict[str, float], cell: dict[str, Any]) -> tuple[str, Inclusions]:
    od = _stain("dohle", style, rng)
    n = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.3, 0.25, 0.15]))
    taken: list[tuple[float, float, float]] = []
    out: Inclusions = []
    for _ in range(n):
        length = float(rng.uniform(1.2, 1.9) * (1.0 if n <= 2 else 0.8))  # semi-major axis, µm
        center = _place(rng, cell, 0.6 * length, (0.72, 0.9), taken)
        taken.append((*center, length))
        tangent = float(np.arctan2(center[1], center[0]) + np.pi / 2 + rng.normal(0, 0.3))
        out.append(
            _blob(
                center,
                length,
                od,
                float(rng.uniform(1.1, 1.5)),
                aspect=float(rng.uniform(0.45, 0.8)),
                angle=tangent,
                harmonics=bc.outline_harmonics(rng, 0.12, 5),
                displace=float(rng.uniform(0.3, 0.6)),
            )
        )
    if rng.random() < 0.45:
        _toxic_granulation(rng, style, cell)
    if rng.random() < 0.35:
        for _ in range(int(rng.integers(1, 4))):
            _vacuole(rng, cell, (0.35, 0.8))
    return ("single" if n == 1 else "multiple"), out


def _hjbli(rng: np.random.Generator, style: dict[str, float], cell: dict[str, Any]) -> tuple[str, Inclusions]:
    od = _stain("hj_body", style, rng, 0.08)
    n = 1 if rng.random() < 0.6 else 2
    taken: list[tuple[float, float, float]] = []
    out: Inclusions = []
    for _ in range(n):
        radius = float(rng.uniform(0.65, 0.9))
        center = _place(rng, cell, radius + 0.4, (0.25, 0.85), taken)
        taken.append((*center, radius))
        out.append(
            _blob(center, radius, od, float(rng.uniform(1.0, 1.35)), aspect=float(rng.uniform(0.85, 1.0)))
        )
    return ("single" if n == 1 else "double"), out


def _gbi(rng: np.random.Generator, style: dict[str, float], cell: dict[str, Any]) -> tuple[str, Inclusions]:
    n = int(rng.choice([1, 2, 3, 4, 5], p=[0.25, 0.3, 0.2, 0.15, 0.1]))
    taken: list[tuple[float, float, float]] = []
    out: Inclusions = []
    for _ in range(n):
        radius = float(rng.uniform(0.6, 0.95))
        center = _place(rng, cell, radius + 0.2, (0.3, 0.85), taken)
        taken.append((*center, radius))
        out.append(
            _blob(
                center,
                radius,
                _stain("green_blue", style, rng, 0.15),
                float(rng.uniform(0.8, 1.1)),
                aspect=float(rng.uniform(0.75, 1.0)),
                angle=float(rng.uniform(0, np.pi)),
                displace=0.8,
                highlight=float(rng.uniform(0.3, 0.55)),
            )
        )
    return ("single" if n == 1 else "multiple"), out


def _bacterium(
    rng: np.random.Generator, kind: str, center: np.ndarray, od: list[float]
) -> list[dict[str, Any]]:
    """One rod (a capsule) or one coccus group (a diplococcus or a short chain of discs)."""
    heading = rng.uniform(0, 2 * np.pi)
    unit = np.array([np.cos(heading), np.sin(heading)])
    density = float(rng.uniform(0.9, 1.3))
    if kind == "rod":
        half = rng.uniform(0.7, 1.3)
        return [
            {
                "shape": "rod",
                "points": [(center - half * unit).tolist(), (center + half * unit).tolist()],
                "radius": float(rng.uniform(0.3, 0.4)),
                "od": od,
                "density": density,
                "displace": 0.0,
                "highlight": 0.0,
            }
        ]
    k = int(rng.choice([1, 2, 3], p=[0.25, 0.55, 0.2]))
    radius = float(rng.uniform(0.35, 0.45))
    offsets = (np.arange(k) - (k - 1) / 2)[:, None] * (2.0 * radius * 1.05) * unit
    return [_blob((center + o).tolist(), radius, od, density) for o in offsets]


def _bac(rng: np.random.Generator, style: dict[str, float], cell: dict[str, Any]) -> tuple[str, Inclusions]:
    od = _stain("bacteria", style, rng, 0.1)
    u = rng.random()
    subtype = "rods" if u < 0.45 else "cocci" if u < 0.8 else "mixed"
    for _ in range(int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))):
        _vacuole(rng, cell, (1.0, 1.7))
    n = int(rng.integers(3, 9))
    taken: list[tuple[float, float, float]] = []
    out: Inclusions = []
    for i in range(n):
        kind = {"rods": "rod", "cocci": "coccus"}.get(subtype, "rod" if i % 2 == 0 else "coccus")
        if rng.random() < 0.75:
            v = cell["vacuoles"][int(rng.integers(len(cell["vacuoles"])))]
            spot = np.asarray(v["center"]) + bc.points_in_ellipse(rng, 1, 0.45 * v["radius"], 0.45 * v["radius"])[0]
        else:
            spot = np.asarray(_place(rng, cell, 1.0, (0.3, 0.85), taken))
        taken.append((float(spot[0]), float(spot[1]), 1.0))
        out.extend(_bacterium(rng, kind, spot, od))
    if rng.random() < 0.5:
        _toxic_granulation(rng, style, cell)
    return subtype, out


_SAMPLERS = {"neu": _neu, "hyp": _hyp, "cry": _cry, "db": _db, "hjbli": _hjbli, "gbi": _gbi, "bac": _bac}


# ==================================================================================================
# parameters
# ==================================================================================================


def sample_params(label: str, rng: np.random.Generator, style: dict[str, float]) -> dict[str, Any]:
    """Draw every random quantity of one image; :func:`draw` renders the result deterministically."""
    if label not in CLASSES:
        raise UnknownNameError(f"unknown neutrophil-inclusion class {label!r}; expected one of {CLASSES}")
    style = _image_style(rng, style)
    field_um = FIELD_UM / (style["magnification"] * rng.uniform(0.97, 1.03))
    offset = np.clip(rng.normal(0.0, 0.4, 2), -1.0, 1.0)
    cell, _ = bc.sample_neutrophil(rng, style)
    cell["center"] = offset.tolist()
    cell["angle"] = float(rng.uniform(0, 2 * np.pi))
    _scale_granules(rng, cell, min(1.0, style["granularity"] * rng.uniform(0.8, 1.0)))
    subtype, inclusions = _SAMPLERS[label](rng, style, cell)
    target = (float(offset[0]), float(offset[1]), bc.cell_reach(cell))
    keep_out = [target]
    neighbours = []
    if rng.random() < 0.2:
        neighbours.append(bc.sample_neighbour(rng, style, field_um, target))
        keep_out.append((*neighbours[0]["center"], bc.cell_reach(neighbours[0])))
    platelets: list[dict[str, Any]] = []
    if rng.random() < 0.3:
        ang = rng.uniform(0, 2 * np.pi)
        anchor = offset + np.array([np.cos(ang), np.sin(ang)]) * (target[2] + rng.uniform(2.0, 4.0))
        platelets = bc.platelet_fragments(rng, style, int(rng.integers(1, 3)), anchor, 0.8)
    tint = style["background_tint"]
    white = np.array(bc.REFERENCE_WHITE) * (1 - tint) + np.array(bc.BLUISH_WHITE) * tint
    return {
        "label": label,
        "subtype": subtype,
        "illumination": (white / 255.0 * style["exposure"] * rng.uniform(0.93, 1.07)).tolist(),
        "smear_thickness": float(rng.uniform(0.82, 1.18)),
        "vignette": float(rng.uniform(0.0, 0.02)),
        "vignette_seed": int(rng.integers(2**31)),
        "field_um": field_um,
        "rbc": bc.sample_red_cells(rng, style, keep_out, field_um),
        "cell": cell,
        "inclusions": inclusions,
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


def _polygon_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """Anti-aliased soft mask of a polygon given in pixel ``(x, y)`` (sub-pixel vertices)."""
    canvas = np.zeros(shape, np.uint8)
    pts = np.round(np.asarray(points) * 16.0).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(canvas, [pts], 255, lineType=cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255.0


def _inclusion_density(
    shape: tuple[int, int], fr: d.Frame, cell: dict[str, Any], inc: dict[str, Any], soft: float
) -> np.ndarray:
    """Soft density map of one inclusion (1 inside, ``1 - highlight`` at a refractile centre)."""
    place = lambda p: fr.xy(bc.cell_to_field(p, cell))  # noqa: E731
    if inc["shape"] == "poly":
        return _polygon_mask(shape, place(inc["points"]))
    if inc["shape"] == "rod":
        return d.capsule_chain(shape, place(inc["points"]), inc["radius"] * fr.ppu, softness=soft)
    centre = place(inc["center"])[0]
    outline = {"aspect": inc["aspect"], "angle": inc["angle"] + cell["angle"], "softness": soft}
    mask = d.polar_blob(shape, centre, inc["radius"] * fr.ppu, harmonics=inc["harmonics"], **outline)
    if inc["highlight"] > 0:
        core = d.polar_blob(shape, centre, 0.45 * inc["radius"] * fr.ppu, **outline)
        mask = mask * (1.0 - inc["highlight"] * core)
    return mask


def _draw_target(shape: tuple[int, int], fr: d.Frame, params: dict[str, Any], seed_mix: int) -> np.ndarray:
    """The neutrophil (``blood_cells`` drawing) with its inclusions composited into the cytoplasm."""
    cell = params["cell"]
    od = bc.draw_cell(shape, fr, cell, seed_mix)
    if not params["inclusions"]:
        return od
    soft = max(0.7, 0.1 * fr.ppu)
    body = d.polar_blob(
        shape,
        fr.xy(cell["center"]),
        cell["radius"] * fr.ppu,
        aspect=cell["aspect"],
        angle=cell["angle"],
        harmonics=cell["harmonics"],
        softness=soft,
    )
    cytoplasm = body * (1.0 - np.minimum(bc.nucleus_mask(shape, fr, cell, soft), body))
    maps = [_inclusion_density(shape, fr, cell, inc, max(0.5, 0.06 * fr.ppu)) for inc in params["inclusions"]]
    displaced = np.zeros(shape, np.float32)
    for m, inc in zip(maps, params["inclusions"], strict=True):
        displaced = np.maximum(displaced, m * inc["displace"])
    od *= (1.0 - displaced * cytoplasm)[..., None]
    for m, inc in zip(maps, params["inclusions"], strict=True):
        od += d.colour_layer(m * cytoplasm * inc["density"], inc["od"])
    return od


def draw(params: dict[str, Any], size: int = 128) -> np.ndarray:
    """Render a parameter dict from :func:`sample_params` as a ``uint8`` RGB image ``size`` x ``size``."""
    shape = (size, size)
    fr = d.Frame(size, params["field_um"])
    seed_mix = size * 7_919  # textures are resampled per output size; geometry is not
    od = bc.draw_red_cells(shape, fr, params["rbc"])
    if params["platelets"]:
        od += bc.draw_platelets(shape, fr, params["platelets"])
    for i, neighbour in enumerate(params["neighbours"]):
        od += bc.draw_cell(shape, fr, neighbour, seed_mix + 101 * (i + 1))
    od += _draw_target(shape, fr, params, seed_mix)
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
# truth
# ==================================================================================================


def _inclusion_area_um2(params: dict[str, Any]) -> float:
    area = 0.0
    for inc in params["inclusions"]:
        if inc["shape"] == "poly":
            area += float(cv2.contourArea(np.asarray(inc["points"], np.float32)))
        elif inc["shape"] == "rod":
            length = float(np.hypot(*np.subtract(inc["points"][1], inc["points"][0])))
            area += 2 * inc["radius"] * length + np.pi * inc["radius"] ** 2
        else:
            area += np.pi * inc["radius"] ** 2 * inc["aspect"]
    return area


def truth(params: dict[str, Any], size: int) -> dict[str, Any]:
    """Per-image generator truth (scalars) for a manifest: inclusions, nucleus, granules, optics."""
    cell = params["cell"]
    fr = d.Frame(size, params["field_um"])
    return {
        "subtype": params["subtype"],
        "blur_sigma": round(params["blur_um"] * fr.ppu, 4),
        "n_inclusions": len(params["inclusions"]),  # each rod / coccus / dot / patch counts once
        "inclusion_area_um2": round(_inclusion_area_um2(params), 3),
        "n_lobes": len(cell["lobes"]) if cell["lobes"] and not cell["chains"] else 1,
        "n_vacuoles": len(cell["vacuoles"]),
        "n_granules": sum(len(g["points"]) for g in cell["granules"]),
        "toxic_granulation": int(cell.get("toxic", False)),
        "cell_diameter_um": round(2 * cell["radius"] * np.sqrt(cell["aspect"]), 3),
        "field_um": round(params["field_um"], 3),
        "noise_sigma": round(params["noise_read"], 5),
        "n_rbc": len(params["rbc"]["radii"]),
        "n_platelet_fragments": len(params["platelets"]),
        "n_neighbour_cells": len(params["neighbours"]),
        "rotation_deg": round(float(np.degrees(cell["angle"])), 2),
        "offset_x_um": round(float(cell["center"][0]), 3),
        "offset_y_um": round(float(cell["center"][1]), 3),
    }


TASK = Phantom(
    name="neutrophil-inclusions",
    classes=CLASSES,
    description="May-Grünwald-Giemsa neutrophils with cytoplasmic inclusions, 7 NeuNN classes",
    style_sampler=sample_style,
    param_sampler=sample_params,
    drawer=draw,
    truth_fn=truth,
    one_label_per_group=True,
    default_size=128,
)
