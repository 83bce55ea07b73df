"""A white-cell verifier learned from a lab's own annotated smear fields.

The colour rules of the ``smear`` detector find nuclei; what they cannot know is how a lab's stain, camera and
focus make a white cell look next to a platelet clump, a stain deposit or a red cell overlap, nor where the
pale cytoplasm ends. The verifier learns both from annotated fields (Pascal VOC boxes or phantom truth):

1. **Candidates**: nuclear regions found at a more sensitive stain threshold than the rules use (so pale
   band forms and lymphocytes are not lost), lobes joined as in the detector.
2. **Features** per candidate, all in µm and relative to the field's median colour so they carry across
   scales and stain batches: nucleus size/shape/colour/texture, the colour of two rings around it (cytoplasm
   or red cells?), and colour profiles in 1 µm strips walking out of the nucleus box in each direction.
3. **Is it a white cell?** A LightGBM classifier on those features.
4. **Where is the cell's edge?** One LightGBM regressor, shared by the four directions, predicts how far the
   cell extends beyond the nucleus box from that direction's profile (and the opposite one).

Overlapping calls are resolved by keeping the more confident one when the other's nucleus lies inside its box.
The fitted verifier is one JSON file (LightGBM's own text model format inside; no pickle), made by
``lablens fit-verifier`` and used with ``lablens analyze --verifier FILE``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from lablens import jsonio
from lablens.errors import MissingInputError, OutputExistsError, SettingError
from lablens.fields.detection import Detection
from lablens.fields.geometry import disc, inside, touches_edge

if TYPE_CHECKING:
    from lablens.fields.brightfield import SmearDetector

FORMAT = "lablens-wbc-verifier/1"
STRIPS = 9  # profile strips of 1 µm walking out of the nucleus box (a white cell is at most ~20 µm across)
DIRECTIONS = ("left", "right", "up", "down")
_OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
_CHANNELS = ("bright", "blue", "sat")

LGB_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 5,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}


def _channels(rgb: np.ndarray) -> np.ndarray:
    """Brightness, blueness (B − R) and saturation per pixel, minus the field's median (H×W×3)."""
    bright = rgb.mean(axis=2)
    blue = rgb[..., 2] - rgb[..., 0]
    sat = rgb.max(axis=2) - rgb.min(axis=2)
    ch = np.stack([bright, blue, sat], axis=2)
    return ch - np.median(ch.reshape(-1, 3), axis=0)


def _stats(values: np.ndarray) -> list[float]:
    """Mean of each channel and the brightness spread of a set of pixels (NaN when empty)."""
    if len(values) == 0:
        return [np.nan] * 4
    return [*values.mean(axis=0).tolist(), float(values[:, 0].std())]


def _strip(ch: np.ndarray, box: Sequence[int], direction: str, k: int, step: int) -> list[float]:
    """Mean channels in the ``k``-th strip (``step`` px thick) outside ``box`` towards ``direction``."""
    h, w = ch.shape[:2]
    x0, y0, x1, y1 = box
    if direction == "left":
        ys, xs = slice(y0, y1), slice(max(0, x0 - (k + 1) * step), max(0, x0 - k * step))
    elif direction == "right":
        ys, xs = slice(y0, y1), slice(min(w, x1 + k * step), min(w, x1 + (k + 1) * step))
    elif direction == "up":
        ys, xs = slice(max(0, y0 - (k + 1) * step), max(0, y0 - k * step)), slice(x0, x1)
    else:
        ys, xs = slice(min(h, y1 + k * step), min(h, y1 + (k + 1) * step)), slice(x0, x1)
    part = ch[ys, xs].reshape(-1, 3)
    return part.mean(axis=0).tolist() if len(part) else [np.nan] * 3


def _edge_distance(box: Sequence[int], direction: str, shape: tuple[int, ...]) -> int:
    x0, y0, x1, y1 = box
    return {"left": x0, "right": shape[1] - x1, "up": y0, "down": shape[0] - y1}[direction]


@dataclass
class Candidate:
    """One nucleus candidate with its features (``shared``) and per-direction profiles (pixels → µm)."""

    box: tuple[int, int, int, int]
    area_um2: float
    shared: list[float]
    profiles: dict[str, list[float]]
    edge_um: dict[str, float]
    edge: bool


SHARED_FEATURES: tuple[str, ...] = (
    "area_um2",
    "lobes",
    "width_um",
    "height_um",
    "extent",
    *(f"nucleus_{c}" for c in (*_CHANNELS, "spread")),
    "nucleus_blue_p90",
    *(f"ring1_{c}" for c in (*_CHANNELS, "spread")),
    *(f"ring2_{c}" for c in (*_CHANNELS, "spread")),
    "edge",
    "edge_um",
)
PROFILE_FEATURES: tuple[str, ...] = tuple(f"strip{k}_{c}" for k in range(STRIPS) for c in _CHANNELS)
CLASSIFIER_FEATURES: tuple[str, ...] = (*SHARED_FEATURES, *(f"mean_{f}" for f in PROFILE_FEATURES))
EXTENT_FEATURES: tuple[str, ...] = (
    *SHARED_FEATURES,
    "along_um",
    "across_um",
    "room_um",
    *(f"this_{f}" for f in PROFILE_FEATURES),
    *(f"opposite_{f}" for f in PROFILE_FEATURES),
)


def candidates(
    detector: SmearDetector, rgb: np.ndarray, stain_threshold: float, min_area_um2: float
) -> list[Candidate]:
    """Nucleus candidates of one field with their features."""
    um = detector.scale()
    px2 = um * um
    rgb = np.asarray(rgb, dtype=np.float32)
    h, w = rgb.shape[:2]
    labels, nuclei = detector.nucleus_candidates(rgb, stain_threshold)
    ch = _channels(rgb)
    blue_any = labels > 0
    step = max(1, round(1.0 / um))
    margin = round(5.0 / um)
    ring1, ring2 = disc(1.5 / um), disc(4.0 / um)
    out: list[Candidate] = []
    for n in nuclei:
        area_um2 = n["area"] * px2
        if area_um2 < min_area_um2:
            continue
        x0, y0, x1, y1 = n["box"]
        cx0, cy0, cx1, cy1 = (
            max(0, x0 - margin),
            max(0, y0 - margin),
            min(w, x1 + margin),
            min(h, y1 + margin),
        )
        mask = np.isin(labels[cy0:cy1, cx0:cx1], n["ids"])
        m8 = mask.astype(np.uint8)
        d1 = cv2.dilate(m8, ring1) > 0
        d2 = cv2.dilate(m8, ring2) > 0
        local = ch[cy0:cy1, cx0:cx1]
        other = blue_any[cy0:cy1, cx0:cx1] & ~mask
        nuc = local[mask]
        bw, bh = (x1 - x0) * um, (y1 - y0) * um
        edge_um = {d: _edge_distance(n["box"], d, (h, w)) * um for d in DIRECTIONS}
        shared = [
            area_um2,
            float(len(n["ids"])),
            bw,
            bh,
            area_um2 / max(bw * bh, 1e-6),
            *_stats(nuc),
            float(np.percentile(nuc[:, 1], 90)),
            *_stats(local[d1 & ~mask & ~other]),
            *_stats(local[d2 & ~d1 & ~other]),
            float(touches_edge(n["box"], (h, w))),
            min(edge_um.values()),
        ]
        profiles = {
            d: [v for k in range(STRIPS) for v in _strip(ch, n["box"], d, k, step)] for d in DIRECTIONS
        }
        out.append(
            Candidate(
                box=(x0, y0, x1, y1),
                area_um2=area_um2,
                shared=shared,
                profiles=profiles,
                edge_um=edge_um,
                edge=touches_edge(n["box"], (h, w)),
            )
        )
    return out


def classifier_row(c: Candidate) -> list[float]:
    mean_profile = np.nanmean(np.array([c.profiles[d] for d in DIRECTIONS], dtype=float), axis=0)
    return [*c.shared, *mean_profile.tolist()]


def extent_row(c: Candidate, direction: str, um: float) -> list[float]:
    x0, y0, x1, y1 = c.box
    along, across = ((x1 - x0), (y1 - y0)) if direction in ("left", "right") else ((y1 - y0), (x1 - x0))
    return [
        *c.shared,
        along * um,
        across * um,
        c.edge_um[direction],
        *c.profiles[direction],
        *c.profiles[_OPPOSITE[direction]],
    ]


def _extend(
    box: Sequence[int], ext_um: dict[str, float], um: float, shape: tuple[int, ...]
) -> tuple[int, ...]:
    x0, y0, x1, y1 = box
    e = {d: max(0.0, v) / um for d, v in ext_um.items()}
    return (
        max(0, round(x0 - e["left"])),
        max(0, round(y0 - e["up"])),
        min(shape[1], round(x1 + e["right"])),
        min(shape[0], round(y1 + e["down"])),
    )


@dataclass
class TrainingField:
    """One annotated field: the image, its scale and the white-cell truth boxes."""

    image: np.ndarray
    um_per_px: float
    boxes: list[tuple[float, float, float, float]]
    name: str = ""


@dataclass
class WbcVerifier:
    """The fitted verifier: candidate settings, classifier and cell-extent regressor (LightGBM text models)."""

    candidate_threshold: float
    min_candidate_um2: float
    threshold: float
    classifier: Any  # lightgbm.Booster
    extent: Any  # lightgbm.Booster
    info: dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------------------------------------- inference
    def detect(self, detector: SmearDetector, rgb: np.ndarray) -> list[Detection]:
        """White cells of one field: candidates scored and boxed, overlapping calls resolved."""
        um = detector.scale()
        shape = rgb.shape
        cands = candidates(detector, rgb, self.candidate_threshold, self.min_candidate_um2)
        if not cands:
            return []
        p = self.classifier.predict(np.array([classifier_row(c) for c in cands], dtype=float))
        keep = [i for i in np.argsort(-p, kind="stable") if p[i] >= self.threshold]
        if not keep:
            return []
        rows = np.array([extent_row(cands[i], d, um) for i in keep for d in DIRECTIONS], dtype=float)
        ext = self.extent.predict(rows).reshape(len(keep), len(DIRECTIONS))
        out: list[Detection] = []
        for i, e in zip(keep, ext, strict=True):
            c = cands[i]
            box = _extend(c.box, dict(zip(DIRECTIONS, e.tolist(), strict=True)), um, shape)
            ncx, ncy = (c.box[0] + c.box[2]) / 2, (c.box[1] + c.box[3]) / 2
            if any(inside(ncx, ncy, o.box) for o in out):  # a lobe or fragment of a cell already called
                continue
            out.append(
                Detection(
                    "wbc",
                    box,
                    score=float(p[i]),
                    area=round(c.area_um2 / (um * um)),
                    attrs={"edge": c.edge, "nucleus_um2": round(c.area_um2, 2), "verifier": True},
                )
            )
        return out

    # ------------------------------------------------------------------------------------------------ fitting
    # ------------------------------------------------------------------------------------------------ storage
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.exists():
            raise OutputExistsError(f"{path} exists; lablens does not overwrite files (choose a new name)")
        doc = {
            "format": FORMAT,
            "candidate_threshold": self.candidate_threshold,
            "min_candidate_um2": self.min_candidate_um2,
            "threshold": self.threshold,
            "classifier_features": list(CLASSIFIER_FEATURES),
            "extent_features": list(EXTENT_FEATURES),
            "info": self.info,
            "classifier": self.classifier.model_to_string(),
            "extent": self.extent.model_to_string(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(jsonio.dumps(doc))
        return path

    @classmethod
    def load(cls, path: str | Path) -> WbcVerifier:
        import lightgbm as lgb

        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SettingError(f"{path}: not a readable verifier file ({exc})") from exc
        if doc.get("format") != FORMAT:
            raise SettingError(f"{path}: not a lablens white-cell verifier (format {doc.get('format')!r})")
        if doc["classifier_features"] != list(CLASSIFIER_FEATURES) or doc["extent_features"] != list(
            EXTENT_FEATURES
        ):
            raise SettingError(f"{path}: fitted with another lablens version's features; fit it again")
        return cls(
            candidate_threshold=float(doc["candidate_threshold"]),
            min_candidate_um2=float(doc["min_candidate_um2"]),
            threshold=float(doc["threshold"]),
            classifier=lgb.Booster(model_str=doc["classifier"]),
            extent=lgb.Booster(model_str=doc["extent"]),
            info=doc.get("info", {}),
        )


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> WbcVerifier:
    return WbcVerifier.load(path)


def load_verifier(path: str | Path) -> WbcVerifier:
    """:meth:`WbcVerifier.load`, cached per file (a detector is built per field; the file is read once)."""
    p = Path(path).resolve()
    if not p.is_file():
        raise MissingInputError(f"{path}: no such verifier file (make one with `lablens fit-verifier`)")
    return _load_cached(str(p), p.stat().st_mtime_ns)
