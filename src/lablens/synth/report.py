"""The quality and memorisation report of a synthetic set (``SYN/report.html`` and ``SYN/quality.json``).

Per synthesised class, against the real images of that class the generator learned from:

- KID (unbiased, the one to read at a few dozen images) and FID (biased upwards at small n) on each feature
  set given — a classifier trained on the lab's images, ImageNet or Inception features — next to a floor: the
  same distances between two random halves of the real images (what "as good as real" looks like at this n);
- diversity: the mean pairwise distance between synthetic images over that between real ones (pixel features);
  below :data:`COLLAPSE_BELOW` the generator is flagged as collapsed (many near-identical images — a GAN's
  failure mode that neither KID at small n nor the memorisation check shows plainly);
- the nearest-neighbour memorisation check (:mod:`lablens.synth.memorisation`) with every flagged pair shown,
  and the closest pairs when none is flagged, so a reader can judge;
- a montage of real and synthetic images.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lablens import __version__
from lablens.synth.features import Features
from lablens.synth.fidelity import fid, kid
from lablens.synth.memorisation import memorisation_check, pixel_features

#: images per montage row and pairs shown per class
MONTAGE_COLUMNS = 10
PAIRS_SHOWN = 8
TILE = 64
#: synthetic diversity below this share of the real images' is flagged as mode collapse
COLLAPSE_BELOW = 0.5


def montage(rows: Sequence[np.ndarray], tile: int = TILE, columns: int = MONTAGE_COLUMNS) -> np.ndarray:
    """One image: each entry of ``rows`` (``N×S×S×3`` uint8) as a row of up to ``columns`` tiles of ``tile`` px."""
    sheet = np.full((len(rows) * (tile + 2) + 2, columns * (tile + 2) + 2, 3), 255, np.uint8)
    for r, images in enumerate(rows):
        for c, img in enumerate(np.asarray(images)[:columns]):
            small = np.asarray(Image.fromarray(img).resize((tile, tile), Image.Resampling.LANCZOS))
            y, x = 2 + r * (tile + 2), 2 + c * (tile + 2)
            sheet[y : y + tile, x : x + tile] = small
    return sheet


def png_b64(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _distances(real: np.ndarray, syn: np.ndarray, seed: int) -> dict[str, float | None]:
    k = kid(real, syn, subsets=50, seed=seed)
    return {"kid": k.mean, "kid_std": k.std, "fid": fid(real, syn) if min(len(real), len(syn)) >= 2 else None}


def _mean_pairwise(features: np.ndarray) -> float:
    sq = (features**2).sum(1)
    dist = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2 * features @ features.T, 0.0, None))
    n = len(features)
    return float(dist.sum() / (n * (n - 1))) if n > 1 else 0.0


def diversity(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Mean pairwise distance of the synthetic images over that of the real ones (pixel features): about 1
    for a generator as varied as the data, near 0 for one that makes the same image again and again."""
    spread = _mean_pairwise(pixel_features(real))
    return _mean_pairwise(pixel_features(synthetic)) / spread if spread > 0 else 0.0


def _real_floor(real: np.ndarray, seed: int) -> dict[str, float | None]:
    """Distances between two random halves of the real images (None below 4 images)."""
    if len(real) < 4:
        return {"kid": None, "kid_std": None, "fid": None}
    order = np.random.default_rng(seed).permutation(len(real))
    half = len(real) // 2
    return _distances(real[order[:half]], real[order[half:]], seed)


def quality_document(
    real: dict[str, np.ndarray],
    synthetic: dict[str, np.ndarray],
    features: dict[str, Features],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Distances and memorisation flags per class (``real``/``synthetic``: class → ``N×S×S×3`` uint8 images
    at the same size; ``features``: name → extractor)."""
    classes: dict[str, Any] = {}
    for c, syn in synthetic.items():
        ref = real[c]
        entry: dict[str, Any] = {"n_real": len(ref), "n_synthetic": len(syn), "features": {}}
        for name, transform in features.items():
            f_real, f_syn = transform(ref), transform(syn)
            entry["features"][name] = {
                "synthetic_vs_real": _distances(f_real, f_syn, seed),
                "real_vs_real": _real_floor(f_real, seed),
            }
        entry["diversity"] = round(diversity(ref, syn), 4)
        entry["collapsed"] = entry["diversity"] < COLLAPSE_BELOW
        checks = memorisation_check(pixel_features(ref), pixel_features(syn))
        flagged = [n for n in checks if n.flagged]
        shown = flagged or sorted(checks, key=lambda n: n.ratio)
        entry["memorisation"] = {
            "flagged": len(flagged),
            "checked": len(checks),
            "pairs": [
                {
                    "synthetic": n.synthetic,
                    "real": n.nearest,
                    "ratio": round(n.ratio, 3),
                    "flagged": n.flagged,
                    "reason": n.reason,
                }
                for n in shown[:PAIRS_SHOWN]
            ],
        }
        classes[c] = entry
    return {"features": list(features), "classes": classes, "seed": seed}


def render_report(
    doc: dict[str, Any],
    real: dict[str, np.ndarray],
    synthetic: dict[str, np.ndarray],
    *,
    title: str,
    notes: Sequence[str] = (),
) -> str:
    """The HTML page of a :func:`quality_document` (images inline, no JavaScript)."""
    from lablens.report.html import template_environment

    views = {}
    for c, entry in doc["classes"].items():
        real_c, syn_c = real[c], synthetic[c]
        rows = [
            real_c[:MONTAGE_COLUMNS],
            syn_c[:MONTAGE_COLUMNS],
            syn_c[MONTAGE_COLUMNS : 2 * MONTAGE_COLUMNS],
        ]
        pairs = entry["memorisation"]["pairs"]
        pair_rows = [syn_c[[p["synthetic"] for p in pairs]], real_c[[p["real"] for p in pairs]]]
        views[c] = {
            "montage": png_b64(montage(rows)),
            "pairs": png_b64(montage(pair_rows, columns=PAIRS_SHOWN)) if pairs else None,
        }
    return (
        template_environment()
        .get_template("synthesis.html.j2")
        .render(doc=doc, views=views, title=title, notes=list(notes), version=__version__)
    )


def write_report(
    out: Path, doc: dict[str, Any], real: dict, synthetic: dict, *, title: str, notes: Sequence[str] = ()
) -> Path:
    """Write ``out/report.html``; return its path."""
    path = Path(out) / "report.html"
    path.write_text(render_report(doc, real, synthetic, title=title, notes=notes), encoding="utf-8")
    return path
