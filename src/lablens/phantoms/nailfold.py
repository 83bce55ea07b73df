"""Synthetic nailfold videocapillaroscopy (NVC) fields: normal and the three SSc patterns of Cutolo.

Each image is a field about 1 mm wide, as a 200× videocapillaroscope shows it: pinkish-red skin seen
through immersion oil, the pale cuticle at the top, the distal row of capillary loops (dark red hairpins
seen from above, apex pointing distally, i.e. up) across the upper half, and below them the
out-of-focus deeper layer (the lower ends of the loops and the subpapillary venous plexus), with
uneven illumination and specular glare from the oil; loops lie at different depths (each has its own
contrast) and the curved nailfold often leaves one side of the field out of focus. A patient (group) has
one pattern, but about one image in eight of an SSc patient shows a spared finger with the next milder
pattern (:data:`SPARED_SHARE`), as patients are classified over all their fingers. Classes follow the SCLEROCAP study and Cutolo's
patterns:

* ``normal`` — a regular row of thin hairpin loops, 8–12 per mm, uniform and parallel, arms and apex
  at most 20 µm across except, in about a third of healthy subjects, one mildly dilated loop (20–32 µm);
  no giant capillary, no haemorrhage;
* ``ssc_early`` — architecture and density (7–10 per mm) preserved, up to two dilated (20–32 µm) and one
  or two giant (≥ 50 µm, mostly just above) capillaries, at most two haemorrhages;
* ``ssc_active`` — frequent giant capillaries (three or more, apical diameter ≥ 50 µm), frequent
  micro-haemorrhages (dark brown-red deposits above the apices), moderate loss (4–7 per mm), mild
  disorganisation;
* ``ssc_late`` — severe loss (fewer than 4 per mm) leaving avascular areas, ramified / bushy
  neoangiogenic capillaries, marked disorganisation, few or no giants and haemorrhages.

As in :mod:`.blood_cells`, :func:`sample_params` draws every random quantity (geometry in µm in a frame
centred on the field, colours as optical densities, texture and noise seeds) and :func:`draw` renders the
dict deterministically at any size. A capillary is one or more centre lines (``chains``) swept by a disc of
varying radius (:func:`draw.capsule_chain`); its *apical diameter* is the vessel width at the apex, which
defines giant (≥ ``GIANT_UM``) and dilated (≥ ``DILATED_UM``) loops exactly.

The same images are also the task's whole fields (:data:`FIELDS`, default 512 px): every capillary of the
distal row (``normal`` / ``dilated`` / ``giant`` / ``ramified``) and every haemorrhage is an
:class:`Instance` whose mask is its drawn shape; objects whose masks touch say ``may_overlap=True``.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from lablens.errors import UnknownNameError
from lablens.phantoms import draw as d
from lablens.phantoms.contract import Instance, Phantom, PhantomFields

CLASSES: tuple[str, ...] = ("normal", "ssc_early", "ssc_active", "ssc_late")
INSTANCE_CLASSES: tuple[str, ...] = ("normal", "dilated", "giant", "ramified", "haemorrhage")

FIELD_UM = 1000.0  # field width in µm at magnification 1 (200× NVC: about 1 mm across)
GIANT_UM = 50.0  # apical diameter of a giant capillary (Cutolo; EULAR consensus)
DILATED_UM = 20.0  # apical diameter above which a capillary is dilated (enlarged)
# SSc spares fingers unevenly and a patient's pattern is read over all fingers, so some images of a
# patient show the next milder pattern; the image keeps the patient's label (``shown_pattern`` in truth).
SPARED_SHARE = 0.12
_MILDER = {"ssc_early": "normal", "ssc_active": "ssc_early", "ssc_late": "ssc_active"}

REFERENCE_LIGHT = (255.0, 247.0, 240.0)  # warm white of the videocapillaroscope's LEDs
_COLOURS: dict[str, tuple[float, float, float]] = {
    "skin": (228.0, 150.0, 132.0),  # dermis under oil: pinkish red
    "cuticle": (238.0, 196.0, 178.0),  # cuticle / hyperkeratotic band distal to the row: paler
    "blood": (150.0, 42.0, 52.0),  # a 15 µm capillary against the light
    "haemorrhage": (122.0, 52.0, 40.0),  # haemosiderin: dark brown-red
    "melanin": (200.0, 170.0, 140.0),  # pigment: absorbs blue most
}
HUE_RANGE = 0.12  # radians of colour rotation at |skin_hue| = 1

# Per-class row architecture: loops per mm, spread of apex height (µm), tilt (degrees), tortuosity
# (relative to the loop's half width), Dirichlet concentration of the spacing (high = regular).
_ARCH: dict[str, dict[str, Any]] = {
    "normal": {"density": (8.0, 12.0), "apex_sd": 10.0, "tilt_sd": 3.0, "tort": 0.25, "regular": 60.0},
    "ssc_early": {"density": (7.0, 10.0), "apex_sd": 12.0, "tilt_sd": 3.5, "tort": 0.3, "regular": 40.0},
    "ssc_active": {"density": (4.0, 7.0), "apex_sd": 40.0, "tilt_sd": 12.0, "tort": 0.6, "regular": 4.0},
    "ssc_late": {"density": (1.0, 4.0), "apex_sd": 80.0, "tilt_sd": 28.0, "tort": 0.9, "regular": 0.8},
}

# ==================================================================================================
# style (per group)
# ==================================================================================================


def sample_style(rng: np.random.Generator) -> dict[str, float]:
    """Sample a synthetic patient / finger / capillaroscope session.

    Returns:
        ``skin_hue`` (-1..1, rotation of every colour), ``skin_redness`` (dermal OD gain),
        ``melanin`` (0..1 pigment), ``exposure`` (illumination gain), ``vessel_contrast`` (blood OD
        gain), ``plexus_visibility`` (contrast of the deeper venous plexus), ``focus_blur_um`` (defocus sigma, µm), ``deep_blur_um`` (blur of the deeper layer, µm),
        ``glare`` (0..1 specular reflections of the oil), ``illumination_gradient`` (uneven lighting),
        ``noise_level`` (sensor read noise) and ``magnification`` (the field is
        ``FIELD_UM / magnification`` µm across).
    """
    return {
        "skin_hue": float(rng.uniform(-1.0, 1.0)),
        "skin_redness": float(rng.uniform(0.75, 1.3)),
        "melanin": float(rng.beta(1.2, 4.0)),
        "exposure": float(rng.uniform(0.72, 1.12)),
        "vessel_contrast": float(rng.uniform(0.55, 1.3)),
        "plexus_visibility": float(rng.uniform(0.1, 1.0)),
        "focus_blur_um": float(rng.uniform(1.5, 5.0)),
        "deep_blur_um": float(rng.uniform(10.0, 22.0)),
        "glare": float(rng.uniform(0.0, 1.0)),
        "illumination_gradient": float(rng.uniform(0.0, 0.3)),
        "noise_level": float(rng.uniform(0.006, 0.02)),
        "magnification": float(rng.uniform(0.93, 1.07)),
    }


def _od(name: str, style: dict[str, float], rng: np.random.Generator, jitter: float = 0.08) -> list[float]:
    """Optical density of a component under this group's colour balance, with per-image jitter."""
    od = d.optical_density(_COLOURS[name], REFERENCE_LIGHT) * rng.uniform(1.0 - jitter, 1.0 + jitter)
    od = d.rotate_hue(od, style["skin_hue"] * HUE_RANGE + rng.normal(0.0, 0.03))
    return [float(v) for v in np.maximum(od, 0.0)]


# ==================================================================================================
# capillary geometry (µm; local frame: arc centre at the origin, apex up = -y, arms down = +y)
# ==================================================================================================


def _hairpin(
    rng: np.random.Generator,
    length: float,
    half: float,
    r_apex: float,
    r_base: tuple[float, float],
    tort: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Centre line and radii of one hairpin loop: arterial arm up, apical arc, venous arm down.

    ``half`` is the distance of each arm's centre line from the loop axis, ``r_apex`` the vessel radius
    at the apex and ``r_base`` the (arterial, venous) radii at the lower end. The arms wiggle sideways
    with amplitude ``tort * half`` (above ~1 they cross: a "crossed" capillary); the wiggle fades
    near the apex so the arc stays round.
    """
    n_arm = max(6, int(length / 18.0))
    wavelength = rng.uniform(60.0, 160.0)
    amps = tort * half * rng.uniform(0.3, 1.0, 2)
    phases = rng.uniform(0.0, 2 * np.pi, 2)
    y_up = np.linspace(length, 0.0, n_arm)
    y_down = y_up[::-1]

    def arm(ys: np.ndarray, side: float, k: int, r0: float) -> tuple[np.ndarray, np.ndarray]:
        fade = np.clip(ys / (0.25 * length), 0.0, 1.0)
        xs = side * half + amps[k] * np.sin(2 * np.pi * ys / wavelength + phases[k]) * fade
        top = np.clip(1.0 - ys / (0.45 * length), 0.0, 1.0)  # radius reaches r_apex in the upper part
        return np.column_stack([xs, ys]), r0 + (r_apex - r0) * top

    left, r_left = arm(y_up, -1.0, 0, r_base[0])
    t = np.linspace(np.pi, 0.0, 11)[1:-1]
    arc = np.column_stack([half * np.cos(t), -half * np.sin(t)])
    right, r_right = arm(y_down, 1.0, 1, r_base[1])
    pts = np.concatenate([left, arc, right])
    radii = np.concatenate([r_left, np.full(len(arc), r_apex), r_right])
    return pts, radii


def _place(pts: np.ndarray, up: float, anchor: np.ndarray) -> np.ndarray:
    """Rotate local points so that local "up" (0, -1) points along angle ``up`` and translate."""
    c, s = np.cos(up), np.sin(up)
    rot = np.array([[c, -s], [s, c]])
    return pts @ rot.T + anchor


def _branches(
    rng: np.random.Generator, trunk: np.ndarray, trunk_r: np.ndarray, n: int
) -> list[dict[str, list[Any]]]:
    """Small tortuous hairpin buds sprouting from the upper part of a loop: a bushy / ramified capillary."""
    upper = np.nonzero(trunk[:, 1] < 0.55 * float(trunk[:, 1].max()))[0]
    out = []
    for _ in range(n):
        i = int(rng.choice(upper))
        base = trunk[i]
        outward = np.sign(base[0]) if abs(base[0]) > 1e-6 else rng.choice([-1.0, 1.0])
        up = float(outward * rng.uniform(0.25, 1.35) + rng.normal(0.0, 0.2))  # up and outward
        length = rng.uniform(50.0, 140.0)
        half = rng.uniform(7.0, 16.0)
        r = float(min(trunk_r[i] * rng.uniform(0.7, 1.0), rng.uniform(5.0, 9.0)))
        pts, radii = _hairpin(rng, length, half, r, (r, r), rng.uniform(0.4, 1.4))
        pts = _place(pts - np.array([0.0, length]), up, base)
        out.append({"points": pts.tolist(), "radii": radii.tolist()})
        if rng.random() < 0.35:  # a bud on the bud
            tip = pts[len(pts) // 2]
            length2, half2 = rng.uniform(25.0, 60.0), rng.uniform(4.0, 9.0)
            pts2, radii2 = _hairpin(rng, length2, half2, 0.8 * r, (0.8 * r, 0.8 * r), rng.uniform(0.5, 1.5))
            pts2 = _place(pts2 - np.array([0.0, length2]), up + rng.normal(0.0, 0.7), tip)
            out.append({"points": pts2.tolist(), "radii": radii2.tolist()})
    return out


def _loop_shape(
    kind: str, rng: np.random.Generator, tort: float, depth: float, mild: bool = False
) -> dict[str, Any]:
    """Local geometry of one capillary of ``kind`` (``normal``, ``dilated``, ``giant``, ``ramified``).

    ``depth`` scales the visible length of the arms (how deep the skin lets one see); ``mild`` giants
    (early pattern) stay below about 66 µm and ``mild`` dilated loops (normal and early) below 32 µm.
    The classes overlap at their borders as Cutolo's semi-quantitative patterns do in readers' hands.
    """
    if kind == "giant":
        apical = rng.uniform(54.0, 95.0) if not mild else rng.uniform(51.0, 66.0)
        length, gap = rng.uniform(130.0, 250.0), rng.uniform(15.0, 60.0)
        arms = apical * rng.uniform(0.55, 0.85, 2)
        tort *= 0.35  # homogeneously enlarged: a broad, smooth U
    elif kind == "dilated":
        apical = rng.uniform(23.0, 45.0) if not mild else rng.uniform(21.0, 32.0)
        length, gap = rng.uniform(150.0, 290.0), rng.uniform(10.0, 35.0)
        arms = apical * rng.uniform(0.65, 0.9, 2)
        tort *= 0.6
    elif kind == "ramified":
        apical = rng.uniform(16.0, 34.0)
        length, gap = rng.uniform(90.0, 200.0), rng.uniform(10.0, 35.0)
        arms = apical * rng.uniform(0.7, 1.0, 2)
    else:
        apical = rng.uniform(11.0, 19.0)
        length, gap = rng.uniform(170.0, 320.0), rng.uniform(8.0, 24.0)
        arms = np.array([rng.uniform(8.0, 0.85 * apical), rng.uniform(0.75 * apical, apical)])
    half = (gap + apical) / 2.0
    pts, radii = _hairpin(rng, length * depth, half, apical / 2.0, (arms[0] / 2.0, arms[1] / 2.0), tort)
    chains = [{"points": pts.tolist(), "radii": radii.tolist()}]
    if kind == "ramified":
        chains += _branches(rng, pts, radii, int(rng.integers(3, 8)))
    return {
        "kind": kind,
        "apical_um": float(apical),
        "half": float(half),
        "length": float(length * depth),
        "chains": chains,
    }


def _extent_x(shape: dict[str, Any]) -> tuple[float, float]:
    """Leftmost and rightmost x (µm, local frame) covered by a capillary."""
    lo, hi = np.inf, -np.inf
    for ch in shape["chains"]:
        p, r = np.asarray(ch["points"]), np.asarray(ch["radii"])
        lo, hi = min(lo, float((p[:, 0] - r).min())), max(hi, float((p[:, 0] + r).max()))
    return lo, hi


# ==================================================================================================
# class-specific composition
# ==================================================================================================


def _n_loops(label: str, rng: np.random.Generator, field_mm: float) -> int:
    """Capillaries in the distal row such that their density per mm lies in the class's range."""
    lo, hi = _ARCH[label]["density"]
    if label == "ssc_late":
        return int(rng.integers(1, int(np.ceil(hi * field_mm - 1e-9))))  # strictly below 4 / mm
    return int(rng.integers(int(np.ceil(lo * field_mm)), int(np.floor(hi * field_mm)) + 1))


def _kinds(label: str, rng: np.random.Generator, n: int) -> tuple[list[str], int]:
    """Kind of every capillary of the row (shuffled) and the number of haemorrhages."""
    if label == "normal":
        kinds = ["dilated"] if rng.random() < 0.35 else []
        haem = 0
    elif label == "ssc_early":
        giants = int(rng.choice([1, 2], p=[0.85, 0.15]))
        dilated = int(rng.integers(0, 3))
        kinds = ["giant"] * giants + ["dilated"] * dilated
        haem = int(rng.choice([0, 1, 2], p=[0.45, 0.35, 0.2]))
    elif label == "ssc_active":
        giants = min(n, max(3, round(rng.uniform(0.35, 0.75) * n)))
        kinds = ["giant"] * giants
        if n > giants and rng.random() < 0.3:
            kinds.append("ramified")
        kinds += [str(rng.choice(["dilated", "normal"], p=[0.6, 0.4])) for _ in range(n - len(kinds))]
        haem = int(rng.integers(3, 8))
    else:
        ramified = int(rng.integers(1, n + 1))
        kinds = ["ramified"] * ramified
        if n > ramified and rng.random() < 0.35:
            kinds.append("giant")
        kinds += [str(rng.choice(["dilated", "normal"])) for _ in range(n - len(kinds))]
        haem = int(rng.random() < 0.25)
    kinds += ["normal"] * (n - len(kinds))
    return [str(k) for k in rng.permutation(kinds)], haem


def _row(
    label: str, rng: np.random.Generator, field_um: float, row_y: float
) -> tuple[list[dict[str, Any]], int]:
    """The distal row, capillaries placed left to right with class-specific (dis)order; haemorrhage count."""
    arch = _ARCH[label]
    n = _n_loops(label, rng, field_um / 1000.0)
    kinds, n_haem = _kinds(label, rng, n)
    depth = rng.uniform(0.6, 1.35)
    mild = label in ("normal", "ssc_early")
    shapes = [_loop_shape(k, rng, arch["tort"] * rng.uniform(0.5, 1.5), depth, mild) for k in kinds]
    extents = [_extent_x(s) for s in shapes]
    widths = np.array([hi - lo for lo, hi in extents])
    free = max(field_um - float(widths.sum()) - 10.0, 0.0)
    weights = np.full(n + 1, arch["regular"])
    weights[[0, -1]] *= 0.5  # the row continues beyond the field: edge gaps are half gaps
    gaps = rng.dirichlet(weights) * free
    x = -field_um / 2 + 5.0
    slope = rng.normal(0.0, 0.05)
    for i, (shape, (lo, hi)) in enumerate(zip(shapes, extents, strict=True)):
        x += gaps[i]
        ax = x - lo  # anchor (arc centre) so that the loop spans [x, x + width]
        apex_y = row_y + slope * ax + rng.normal(0.0, arch["apex_sd"])
        up = float(np.radians(rng.normal(0.0, arch["tilt_sd"])))
        anchor = np.array([ax, apex_y + shape["half"]])
        for ch in shape["chains"]:
            ch["points"] = _place(np.asarray(ch["points"]), up, anchor).tolist()
        shape["apex"] = _place(np.array([[0.0, -shape["half"]]]), up, anchor)[0].tolist()
        shape["up"] = up
        x += hi - lo
    return shapes, n_haem


def _haemorrhages(rng: np.random.Generator, loops: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Micro-haemorrhages: dark deposits just distal to (above) an apex, preferably of an enlarged loop."""
    weight = np.array([{"giant": 4.0, "dilated": 2.0}.get(lp["kind"], 1.0) for lp in loops])
    out = []
    for _ in range(n):
        host = loops[int(rng.choice(len(loops), p=weight / weight.sum()))]
        width = 2 * host["half"] + host["apical_um"]
        cap = rng.random() < 0.4  # a "cap" over the apex
        radius = rng.uniform(0.3, 0.5) * width if cap else rng.uniform(12.0, 28.0)
        radius = float(np.clip(radius, 9.0, 45.0))
        aspect = rng.uniform(0.3, 0.55) if cap else rng.uniform(0.55, 1.0)
        lift = host["apical_um"] / 2 + aspect * radius + rng.uniform(4.0, 45.0)
        cx = host["apex"][0] + rng.uniform(-0.35, 0.35) * width
        cy = host["apex"][1] - lift
        blobs = [
            {"center": [cx, cy], "radius": radius, "aspect": aspect, "angle": float(rng.normal(0.0, 0.25))}
        ]
        for _ in range(int(rng.integers(0, 4))):  # satellite dots
            ang = rng.uniform(0.0, 2 * np.pi)
            dist = radius * rng.uniform(0.6, 1.4)
            blobs.append(
                {
                    "center": [cx + dist * np.cos(ang), cy + aspect * dist * np.sin(ang)],
                    "radius": radius * rng.uniform(0.3, 0.6),
                    "aspect": rng.uniform(0.6, 1.0),
                    "angle": rng.uniform(0.0, np.pi),
                }
            )
        for b in blobs:
            b["harmonics"] = [
                [float(k), float(rng.normal(0.0, 0.12 / k)), float(rng.uniform(0, 2 * np.pi))]
                for k in (2, 3, 5)
            ]
            b["center"] = [float(v) for v in b["center"]]
            b["radius"], b["aspect"], b["angle"] = float(b["radius"]), float(b["aspect"]), float(b["angle"])
        out.append(
            {"blobs": blobs, "center": [float(cx), float(cy)], "darkness": float(rng.uniform(0.7, 1.15))}
        )
    return out


def _plexus(
    rng: np.random.Generator, field_um: float, row_y: float, visibility: float
) -> list[dict[str, Any]]:
    """Meandering, wide vessels of the deeper subpapillary plexus (drawn out of focus)."""
    out = []
    for _ in range(int(rng.integers(0, 6))):
        base = row_y + rng.uniform(330.0, 620.0)
        y = base + rng.normal(0.0, 40.0)
        heading = rng.normal(0.0, 0.2)
        x = -field_um / 2 - 60.0
        pts = []
        while x < field_um / 2 + 60.0:
            pts.append([x, y])
            pull = 0.002 * (base - y)  # meanders about its depth instead of drifting across the field
            heading = float(np.clip(0.6 * heading + pull + rng.normal(0.0, 0.25), -0.6, 0.6))
            x += 50.0 * np.cos(heading)
            y += 50.0 * np.sin(heading)
        pts.append([x, y])
        out.append(
            {
                "points": pts,
                "radii": (rng.uniform(15.0, 40.0) * rng.uniform(0.8, 1.2, len(pts))).tolist(),
                "contrast": float(visibility * rng.uniform(0.45, 1.1)),
            }
        )
    return out


# ==================================================================================================
# parameters
# ==================================================================================================


def sample_params(label: str, rng: np.random.Generator, style: dict[str, float]) -> dict[str, Any]:
    """Draw every random quantity of one field; :func:`draw` renders the result deterministically."""
    if label not in CLASSES:
        raise UnknownNameError(f"unknown nailfold class {label!r}; expected one of {CLASSES}")
    field_um = FIELD_UM / (style["magnification"] * rng.uniform(0.97, 1.03))
    row_y = rng.uniform(-0.3, -0.08) * field_um
    shown = _MILDER[label] if label in _MILDER and rng.random() < SPARED_SHARE else label
    loops, n_haem = _row(shown, rng, field_um, row_y)
    haem = _haemorrhages(rng, loops, n_haem)
    for lp in loops:  # loops lie at different depths under a more or less transparent skin
        lp["contrast"] = float(rng.uniform(0.4, 1.0))
    # the nailfold is curved: often one side of the field lies outside the focal plane
    soft_side = int(rng.choice([-1, 1])) if rng.random() < 0.6 else 0
    soft_share = float(rng.uniform(0.15, 0.5)) if soft_side else 0.0
    glare = []
    for _ in range(int(rng.poisson(0.6 + 2.5 * style["glare"]))):
        glare.append(
            {
                "center": rng.uniform(-0.5, 0.5, 2).tolist(),
                "radius": float(rng.uniform(0.015, 0.08)),
                "aspect": float(rng.uniform(0.25, 0.9)),
                "angle": float(rng.uniform(0.0, np.pi)),
                "strength": float(style["glare"] * rng.uniform(0.3, 0.85)),
            }
        )
    return {
        "label": label,
        "shown_pattern": shown,
        "field_um": field_um,
        "row_y": float(row_y),
        "cuticle_edge_um": float(rng.uniform(25.0, 70.0)),
        "loops": loops,
        "haemorrhages": haem,
        "plexus": _plexus(rng, field_um, row_y, style["plexus_visibility"]),
        "skin_od": _od("skin", style, rng),
        "cuticle_od": _od("cuticle", style, rng),
        "blood_od": [v * style["vessel_contrast"] for v in _od("blood", style, rng, 0.15)],
        "haem_od": _od("haemorrhage", style, rng, 0.1),
        "melanin_od": [v * style["melanin"] for v in _od("melanin", style, rng)],
        "redness": float(style["skin_redness"] * rng.uniform(0.8, 1.2)),
        "illumination": (
            np.asarray(REFERENCE_LIGHT) / 255.0 * style["exposure"] * rng.uniform(0.85, 1.15)  # auto-exposure
        ).tolist(),
        "gradient": float(style["illumination_gradient"] * rng.uniform(0.5, 1.0)),
        "gradient_angle": float(rng.uniform(0.0, 2 * np.pi)),
        "vignette": float(rng.uniform(0.05, 0.25)),
        "glare": glare,
        "texture_seed": int(rng.integers(2**31)),
        "blur_um": float(style["focus_blur_um"] * rng.uniform(0.85, 1.15)),
        "soft_side": soft_side,
        "soft_share": soft_share,
        "soft_blur_um": float(rng.uniform(18.0, 35.0)),
        "deep_blur_um": float(style["deep_blur_um"] * rng.uniform(0.85, 1.15)),
        "noise_read": float(style["noise_level"] * rng.uniform(0.8, 1.25)),
        "noise_shot": float(rng.uniform(0.0005, 0.002)),
        "noise_seed": int(rng.integers(2**31)),
    }


# ==================================================================================================
# drawing
# ==================================================================================================


_PIECE = 8  # segments per piece of a centre line in :func:`_chain_masks`


def _chain_masks(
    shape: tuple[int, int], fr: d.Frame, chains: list[dict[str, Any]], soft: float, scale: float = 1.0
) -> np.ndarray:
    """Soft mask of centre-line chains (µm) swept by a disc of their radii times ``scale``.

    The same mask as a union of :func:`draw.capsule_chain` calls (a test checks it), computed in pieces
    of ``_PIECE`` segments with all segments of a piece at once and each piece in its own bounding box:
    several times faster for long, thin vessels.
    """
    out = np.zeros(shape, np.float32)
    for ch in chains:
        pts = fr.xy(ch["points"]).astype(np.float32)
        rad = (np.asarray(ch["radii"], np.float32) * fr.ppu * scale).astype(np.float32)
        for i in range(0, max(len(pts) - 1, 1), _PIECE):
            _sweep(out, pts[i : i + _PIECE + 1], rad[i : i + _PIECE + 1], soft)
    return out


def _sweep(out: np.ndarray, pts: np.ndarray, rad: np.ndarray, soft: float) -> None:
    """Max ``out`` in place with the soft mask of one polyline piece (as :func:`draw.capsule_chain`)."""
    reach = float(rad.max()) + 2.0 * soft + 1.0
    h, w = out.shape
    c0, c1 = max(int(np.floor(pts[:, 0].min() - reach)), 0), min(int(np.ceil(pts[:, 0].max() + reach)) + 1, w)
    r0, r1 = max(int(np.floor(pts[:, 1].min() - reach)), 0), min(int(np.ceil(pts[:, 1].max() + reach)) + 1, h)
    if c0 >= c1 or r0 >= r1:
        return
    xx = np.arange(c0, c1, dtype=np.float32)[None, None, :]
    yy = np.arange(r0, r1, dtype=np.float32)[None, :, None]
    if len(pts) == 1:
        dist = np.sqrt((xx - pts[0, 0]) ** 2 + (yy - pts[0, 1]) ** 2)[0] - rad[0]
    else:
        a, b = pts[:-1, :, None, None], pts[1:, :, None, None]
        ra, rb = rad[:-1, None, None], rad[1:, None, None]
        ex, ey = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
        length2 = np.maximum(ex * ex + ey * ey, 1e-6)
        t = np.clip(((xx - a[:, 0]) * ex + (yy - a[:, 1]) * ey) / length2, 0.0, 1.0)
        dist = (
            np.sqrt((xx - a[:, 0] - t * ex) ** 2 + (yy - a[:, 1] - t * ey) ** 2) - (ra + t * (rb - ra))
        ).min(0)
    np.maximum(out[r0:r1, c0:c1], np.clip(0.5 - dist / max(soft, 1e-3), 0.0, 1.0), out=out[r0:r1, c0:c1])


def _haem_mask(shape: tuple[int, int], fr: d.Frame, h: dict[str, Any], soft: float) -> np.ndarray:
    return d.union(
        *[
            d.polar_blob(
                shape,
                fr.xy(b["center"]),
                b["radius"] * fr.ppu,
                aspect=b["aspect"],
                angle=b["angle"],
                harmonics=b["harmonics"],
                softness=soft,
            )
            for b in h["blobs"]
        ]
    )


def _skin(shape: tuple[int, int], fr: d.Frame, params: dict[str, Any], seed: int) -> np.ndarray:
    """Background OD: dermis with blotchy redness, the paler cuticle band distal to the row, pigment."""
    h, w = shape
    ys = (np.arange(h, dtype=np.float32) - fr.centre) / fr.ppu
    edge = params["row_y"] - params["cuticle_edge_um"]
    wave = 25.0 * d.smooth_noise((1, w), w / 3.0, seed + 1)[0]
    cuticle = 1.0 / (1.0 + np.exp((ys[:, None] - edge - wave[None, :]) / 18.0))
    blotch = d.smooth_noise(shape, 160.0 * fr.ppu, seed + 2, octaves=3)
    # horizontal keratin streaks in the cuticle: noise stretched along x
    thin = d.smooth_noise((h, max(w // 6, 2)), max(2.0, 8.0 * fr.ppu), seed + 3)
    streaks = cv2.resize(thin, (w, h), interpolation=cv2.INTER_LINEAR)
    redness = params["redness"] * (1.0 + 0.1 * blotch)
    skin = d.colour_layer(redness * (1.0 - cuticle), params["skin_od"])
    skin += d.colour_layer(cuticle * (1.0 + 0.12 * streaks), params["cuticle_od"])
    return skin + np.asarray(params["melanin_od"], np.float32)


def _depth(shape: tuple[int, int], fr: d.Frame, row_y: float) -> np.ndarray:
    """0 at the focal plane of the apices, rising to 1 for the deeper, out-of-focus layer."""
    ys = (np.arange(shape[0], dtype=np.float32) - fr.centre) / fr.ppu
    col = np.clip((ys - row_y - 110.0) / 220.0, 0.0, 1.0)
    return np.broadcast_to(col[:, None], shape).astype(np.float32)


def _render(params: dict[str, Any], size: int, want_masks: bool) -> tuple[np.ndarray, list[Instance]]:
    shape = (size, size)
    fr = d.Frame(size, params["field_um"])
    soft = max(0.6, 1.5 * fr.ppu)
    seed = params["texture_seed"] + size * 7_919  # textures are resampled per output size; geometry is not
    od = _skin(shape, fr, params, seed)

    # vessels: a tube (darker core), granular blood column, wider vessels darker
    vessels = np.zeros(shape, np.float32)
    grain = 1.0 + 0.15 * d.smooth_noise(shape, max(1.0, 7.0 * fr.ppu), seed + 4)
    loop_masks = []
    for lp in params["loops"]:
        outer = _chain_masks(shape, fr, lp["chains"], soft)
        core = _chain_masks(shape, fr, lp["chains"], soft, 0.5)
        gain = float(np.clip((lp["apical_um"] / 15.0) ** 0.12, 0.9, 1.2))
        vessels = np.maximum(vessels, lp["contrast"] * gain * (0.75 * outer + 0.25 * core))
        loop_masks.append(outer)
    plexus = np.zeros(shape, np.float32)
    for v in params["plexus"]:
        plexus = np.maximum(plexus, v["contrast"] * _chain_masks(shape, fr, [v], soft))
    sharp = vessels * grain
    deep_sigma = params["deep_blur_um"] * fr.ppu
    depth = _depth(shape, fr, params["row_y"])
    blood = (1.0 - depth) * sharp + depth * 0.8 * d.defocus(sharp, deep_sigma)
    blood += d.defocus(plexus, 0.6 * deep_sigma)
    od += d.colour_layer(blood, params["blood_od"])

    haem_masks = []
    for hm in params["haemorrhages"]:
        m = _haem_mask(shape, fr, hm, soft)
        od += d.colour_layer(m * hm["darkness"] * grain, params["haem_od"])
        haem_masks.append(m)

    # uneven illumination: a linear gradient and a radial fall-off
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1) - 0.5
    ang = params["gradient_angle"]
    light = (
        1.0
        + params["gradient"] * (xx * np.cos(ang) + yy * np.sin(ang))
        - params["vignette"] * (xx * xx + yy * yy)
    )
    img = d.absorb(np.asarray(params["illumination"], np.float32)[None, None, :] * light[..., None], od)
    for g in params["glare"]:
        spot = d.polar_blob(
            shape,
            (np.asarray(g["center"]) * size + fr.centre),
            g["radius"] * size,
            aspect=g["aspect"],
            angle=g["angle"],
            softness=max(1.0, 0.6 * g["radius"] * size),
        )
        img = d.alpha_over(img, (1.0, 0.98, 0.96), g["strength"] * spot)
    img = d.defocus(img, d.total_blur(params["blur_um"] * fr.ppu, params, size))
    if params["soft_side"]:  # the part of the curved nailfold outside the focal plane
        ramp = (params["soft_side"] * xx + 0.5 - (1.0 - params["soft_share"])) / 0.15
        far = np.clip(ramp, 0.0, 1.0)[..., None]
        img = (1.0 - far) * img + far * d.defocus(img, params["soft_blur_um"] * fr.ppu)
    img = d.sensor_noise(
        img, params["noise_seed"] + size * 7_919, read=params["noise_read"], shot=params["noise_shot"]
    )
    out = d.to_uint8(img)
    if not want_masks:
        return out, []
    return out, _instances(fr, params, loop_masks, haem_masks)


def _loop_label(lp: dict[str, Any]) -> str:
    if lp["kind"] == "ramified":
        return "ramified"
    if lp["apical_um"] >= GIANT_UM:
        return "giant"
    return "dilated" if lp["apical_um"] >= DILATED_UM else "normal"


def _instances(
    fr: d.Frame, params: dict[str, Any], loop_masks: list[np.ndarray], haem_masks: list[np.ndarray]
) -> list[Instance]:
    """One instance per capillary of the row and per haemorrhage; touching masks may overlap; an object cut by
    the field's edge is marked ``truncated`` (its centre may lie outside the image)."""
    masks = [m >= 0.5 for m in (*loop_masks, *haem_masks)]
    labels = [_loop_label(lp) for lp in params["loops"]] + ["haemorrhage"] * len(haem_masks)
    centres = [lp["apex"] for lp in params["loops"]] + [h["center"] for h in params["haemorrhages"]]
    attrs: list[dict[str, Any]] = [
        {"apical_diameter_um": round(lp["apical_um"], 2), "tilt_deg": round(float(np.degrees(lp["up"])), 2)}
        for lp in params["loops"]
    ] + [{"apical_diameter_um": 0.0, "tilt_deg": 0.0} for _ in haem_masks]
    stack = np.stack(masks) if masks else np.zeros((0, fr.size, fr.size), bool)
    cover = stack.sum(axis=0)
    out = []
    for i, m in enumerate(masks):
        if not m.any():
            continue
        cx, cy = fr.xy(centres[i])
        cut = bool(m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())  # cut by the field's edge
        out.append(
            Instance(
                label=labels[i],
                mask=m,
                center=(float(cx), float(cy)),
                may_overlap=bool((cover[m] > 1).any()),
                attrs={**attrs[i], "truncated": cut},
            )
        )
    return out


def draw(params: dict[str, Any], size: int = 256) -> np.ndarray:
    """Render a parameter dict from :func:`sample_params` as a ``uint8`` RGB image ``size`` x ``size``."""
    return _render(params, size, want_masks=False)[0]


def draw_field(params: dict[str, Any], size: int = 512) -> tuple[np.ndarray, list[Instance]]:
    """Render a field with one :class:`Instance` per capillary and per haemorrhage."""
    return _render(params, size, want_masks=True)


# ==================================================================================================
# truth and convenience
# ==================================================================================================


def truth(params: dict[str, Any], size: int) -> dict[str, Any]:
    """Per-image generator truth (scalars): capillary density, counts by kind, largest gap, optics."""
    loops = params["loops"]
    field_mm = params["field_um"] / 1000.0
    fr = d.Frame(size, params["field_um"])
    xs = sorted(lp["apex"][0] for lp in loops)
    edges = [-params["field_um"] / 2, *xs, params["field_um"] / 2]
    labels = [_loop_label(lp) for lp in loops]
    return {
        "capillaries_per_mm": round(len(loops) / field_mm, 3),
        "n_capillaries": len(loops),
        "n_giant": labels.count("giant"),
        "n_dilated": labels.count("dilated"),
        "n_ramified": labels.count("ramified"),
        "n_haemorrhage": len(params["haemorrhages"]),
        "max_apical_diameter_um": round(max(lp["apical_um"] for lp in loops), 2),
        "max_gap_um": round(float(np.diff(edges).max()), 1),
        "ssc_landscape": int(params["label"] != "normal"),  # the patient's verdict
        "shown_pattern": params["shown_pattern"],  # what this finger shows (milder on spared fingers)
        "blur_sigma": round(params["blur_um"] * fr.ppu, 4),
        "defocused_share": round(params["soft_share"], 3),  # of the field width, on one side
        "field_um": round(params["field_um"], 2),
        "noise_sigma": round(params["noise_read"], 5),
    }


FIELDS = PhantomFields(
    classes=CLASSES,
    instance_classes=INSTANCE_CLASSES,
    sampler=sample_params,
    drawer=draw_field,
    truth_fn=truth,
    default_size=512,
    one_label_per_group=True,
)

TASK = Phantom(
    name="nailfold",
    classes=CLASSES,
    description="Nailfold videocapillaroscopy fields (~1 mm, 200×): normal vs SSc early / active / late (Cutolo)",
    style_sampler=sample_style,
    param_sampler=sample_params,
    drawer=draw,
    truth_fn=truth,
    one_label_per_group=True,
    default_size=256,
    fields=FIELDS,
)
