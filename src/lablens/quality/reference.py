"""Quality flags relative to the model's own images: is this cell brighter, darker or less sharp than the cells
the bundle was trained on?

A fixed rule ("more than 5 % of the pixels clipped") is noise on one microscope and blind on another: every
normal CellaVision cell has a bright, partly clipped background. So each bundle trained on single images stores,
beside its out-of-distribution summary, the distribution of four appearance statistics over its training +
validation images, at its input size (:class:`ImageReference`, card key ``ood.appearance``):

- ``brightness``: mean luminance (0–255);
- ``clipped_bright``: share of pixels with a channel at 250 or more (registered measure ``saturated``);
- ``clipped_dark``: share of pixels with luminance 5 or less (``underexposed``);
- ``sharpness``: variance of the Laplacian of the grey image (``laplacian_var``).

A cell is flagged ``overexposed`` when it is brighter, or has more clipped highlights, than all but
:data:`TAIL` % of the training images; ``underexposed`` likewise for darkness and clipped shadows; ``blurred``
when it is less sharp than all but :data:`TAIL` %. Clipped shares must also exceed :data:`MIN_SHARE` (a
reference without clipped pixels would otherwise flag a single one). Each flag says what differs and by how much.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from lablens.quality.measures import measure_image

STATISTICS = ("brightness", "clipped_bright", "clipped_dark", "sharpness")
#: percentiles kept of each statistic (the tails decide the flags; the middle is shown in messages)
PERCENTILES = (0.25, 0.5, 1, 5, 25, 50, 75, 95, 99, 99.5, 99.75)
TAIL = 0.25  # % of the training images beyond each flag's threshold
MIN_SHARE = 0.01  # a clipped share below this never flags
MIN_IMAGES = 20


@dataclass(frozen=True)
class Flag:
    """A quality flag and the reason, in words a technician reads."""

    name: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"flag": self.name, "reason": self.reason}


def appearance(images: np.ndarray) -> np.ndarray:
    """``N × 4`` statistics (order: :data:`STATISTICS`) of ``N × H × W × 3`` uint8 images."""
    out = np.zeros((len(images), len(STATISTICS)))
    for i, img in enumerate(images):
        m = measure_image(img, ["saturated", "underexposed", "laplacian_var"])
        grey = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        out[i] = (float(grey.mean()), m["saturated"], m["underexposed"], m["laplacian_var"])
    return out


@dataclass(frozen=True)
class ImageReference:
    """Percentiles (:data:`PERCENTILES`) of each appearance statistic over a bundle's training images."""

    percentiles: dict[str, np.ndarray]
    n_images: int

    @classmethod
    def fit(cls, images: np.ndarray, rows: np.ndarray | None = None) -> ImageReference | None:
        """From the model's training + validation images (``images[rows]``, at its input size); None with fewer
        than :data:`MIN_IMAGES`."""
        rows = np.arange(len(images)) if rows is None else np.asarray(rows)
        if len(rows) < MIN_IMAGES:
            return None
        stats = np.concatenate([appearance(images[rows[i : i + 256]]) for i in range(0, len(rows), 256)])
        return cls(
            {name: np.percentile(stats[:, j], PERCENTILES) for j, name in enumerate(STATISTICS)}, len(rows)
        )

    def to_card(self) -> dict[str, Any]:
        return {
            "statistics": list(STATISTICS),
            "percentiles": list(PERCENTILES),
            "values": {k: [round(float(v), 6) for v in vals] for k, vals in self.percentiles.items()},
            "n_images": self.n_images,
        }

    @classmethod
    def from_card(cls, doc: dict[str, Any] | None) -> ImageReference | None:
        if not doc or list(doc.get("percentiles") or []) != list(PERCENTILES):
            return None  # none, or from another lablens version: no reference rather than a wrong one
        return cls(
            {k: np.asarray(v, dtype=np.float64) for k, v in doc["values"].items()}, int(doc["n_images"])
        )

    @classmethod
    def from_bundle(cls, bundle: Any) -> ImageReference | None:
        """The bundle's reference; None for bundles trained before lablens kept one (or on bags)."""
        return cls.from_card((bundle.card.get("ood") or {}).get("appearance"))

    def _at(self, name: str, pct: float) -> float:
        return float(self.percentiles[name][PERCENTILES.index(pct)])

    def flags(self, images: np.ndarray) -> list[list[Flag]]:
        """The flags of each image (at the bundle's input size and resize mode, as the model sees it)."""
        return [self._flags(*row) for row in appearance(np.asarray(images))]

    def _flags(self, bright: float, clip_hi: float, clip_lo: float, sharp: float) -> list[Flag]:
        hi, lo, share = 100 - TAIL, TAIL, f"{100 - TAIL:g} %"
        flags = []
        for name, word, beyond, limit, clipped, stat, colour in (
            ("overexposed", "brighter", bright > self._at("brightness", hi), "at most", clip_hi, "clipped_bright", "white"),
            ("underexposed", "darker", bright < self._at("brightness", lo), "at least", clip_lo, "clipped_dark", "black"),
        ):  # fmt: skip
            why = []
            if beyond:
                edge = self._at("brightness", hi if word == "brighter" else lo)
                why.append(f"mean brightness {bright:.0f} (training images: {limit} {edge:.0f})")
            if clipped > max(self._at(stat, hi), MIN_SHARE):
                why.append(
                    f"{clipped:.0%} of pixels clipped {colour} (training: at most {self._at(stat, hi):.0%})"
                )
            if why:
                flags.append(Flag(name, f"{word} than {share} of the training images: " + "; ".join(why)))
        if sharp < self._at("sharpness", lo):
            flags.append(
                Flag(
                    "blurred",
                    f"less sharp than {share} of the training images (Laplacian variance {sharp:.2g}; training: at "
                    f"least {self._at('sharpness', lo):.2g}, median {self._at('sharpness', 50):.2g})",
                )
            )
        return flags
