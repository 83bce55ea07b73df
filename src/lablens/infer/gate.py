"""The quality gate: a blur-level model turns each image into a quality score and an evaluable flag.

A quality model is any bundle whose classes are blur levels (``0``, ``1``, …), typically ``blur_level``
(quality measures + LightGBM) trained on a ``lablens degrade`` set; a CNN trained on the same column works
too. The score is the expected level under the model's calibrated probabilities, a continuous value
between the smallest and largest level. A ``multitask`` bundle carries its own quality head, which regresses
the level directly; it gates its own predictions (:func:`has_quality_head`). An image whose score exceeds ``max_level`` is *not evaluable*: the
predictor reports it as such instead of classifying it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lablens.data.preprocess import to_square
from lablens.infer.bundle import Bundle, BundleError, load_bundle


def level_values(classes: Sequence[str]) -> np.ndarray:
    """The numeric blur level of each class name; a bundle with other classes is not a quality model."""
    try:
        return np.asarray([float(c) for c in classes], dtype=np.float64)
    except ValueError:
        raise BundleError(
            f"not a quality model: its classes {list(classes)[:5]} are not blur levels "
            "(train one with `lablens train DEGRADED --label-column blur_level --model blur_level`)"
        ) from None


def expected_level(proba: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Σ p(level) · level per row."""
    return np.asarray(proba, dtype=np.float64) @ level_values(classes)


def has_quality_head(bundle: Bundle) -> bool:
    """Whether a bundle's model predicts its own blur level (a multitask model with its quality head)."""
    return "quality" in ((bundle.card.get("model") or {}).get("heads") or [])


class QualityGate:
    """Scores images with a quality bundle and flags those above ``max_level`` as not evaluable."""

    def __init__(self, bundle: Bundle, max_level: float = 2.5) -> None:
        self.head = has_quality_head(bundle)
        if not self.head:
            level_values(bundle.classes)  # refuse a non-quality bundle early, with the reason
        self.bundle = bundle
        self.max_level = float(max_level)

    @classmethod
    def load(cls, path: str | Path, max_level: float = 2.5) -> QualityGate:
        return cls(load_bundle(path), max_level)

    @classmethod
    def for_bundle(cls, bundle: Bundle, quality: str | Path | None, max_level: float) -> QualityGate | None:
        """The gate a classifier's predictions go through: the ``quality`` bundle when given, else the
        classifier's own quality head (a multitask model), else none."""
        if quality is not None:
            return cls.load(quality, max_level)
        if has_quality_head(bundle):
            return cls(bundle, max_level)
        return None

    def resize(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 images of any size at the quality bundle's size and resize mode (what :meth:`score_crops`
        takes)."""
        size, mode = self.bundle.image_size, self.bundle.resize_mode
        return np.stack([to_square(np.asarray(im), size, mode) for im in images])

    def score(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Quality scores (expected blur level) of RGB uint8 images of any size."""
        if len(images) == 0:
            return np.zeros(0)
        return self.score_crops(self.resize(images))

    def score_crops(self, crops: np.ndarray) -> np.ndarray:
        """Quality scores of images already at the quality bundle's size and resize mode."""
        from lablens.evaluate.calibration import apply_temperature

        if len(crops) == 0:
            return np.zeros(0)
        if self.head:
            return np.asarray(self.bundle.estimator.predict_quality(crops), dtype=np.float64)
        proba = apply_temperature(self.bundle.estimator.predict_logits(crops), self.bundle.temperature)
        return expected_level(proba, self.bundle.classes)

    def evaluable(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) <= self.max_level

    def score_field(self, image: np.ndarray, tile_px: float) -> float:
        """A whole field's quality score: the median score of its most textured tiles.

        The field is cut into a grid of ``tile_px`` tiles (the side of a cell crop, so the gate sees the
        scale it was trained at); the quarter with the largest grey-level spread (cells, not empty background,
        which looks blurred to any sharpness measure) is scored. Detection is not needed: a field too blurred
        for any cell to be found is still judged.
        """
        img = np.asarray(image)
        h, w = img.shape[:2]
        side = max(8, round(tile_px))
        if side >= min(h, w):  # one tile: the whole field
            return float(self.score([img])[0])
        tiles = [
            img[y : y + side, x : x + side]
            for y in range(0, h - side + 1, side)
            for x in range(0, w - side + 1, side)
        ]
        spread = np.array([t.mean(axis=2).std() if t.ndim == 3 else t.std() for t in tiles])
        keep = np.argsort(-spread, kind="stable")[: max(1, len(tiles) // 4)]
        return float(np.median(self.score([tiles[i] for i in keep])))
