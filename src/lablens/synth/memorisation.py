"""Does a generator hand back its training images? A nearest-neighbour check of every synthetic image.

A synthetic image is flagged when it is much closer to one real image than to the second-closest
(``nearest < ratio × second``, the issue's rule: a copy sits on one image, a new image sits among several), and
always when it is an exact or near-exact copy (``nearest <= copy_distance``). Distances are Euclidean between
feature rows (by default :func:`pixel_features`: small, standardised images, which catch exact and near
copies); the pairs are kept so a report can show them side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lablens.errors import SettingError

#: flagged when nearest < RATIO × second-nearest: a copy with sensor noise sits near 0.1, a new image of a
#: low-diversity class (a phantom disc of about the same size and colour as a real one) can come down to 0.5
RATIO = 1 / 3
#: side of the images compared by :func:`pixel_features`
PIXEL_SIDE = 32


@dataclass(frozen=True)
class Neighbour:
    """One synthetic image's two nearest real images and whether it is flagged."""

    synthetic: int
    nearest: int
    distance: float
    second_distance: float
    flagged: bool
    reason: str

    @property
    def ratio(self) -> float:
        return self.distance / self.second_distance if self.second_distance > 0 else 0.0


def pixel_features(images: np.ndarray, side: int = PIXEL_SIDE) -> np.ndarray:
    """``N×(side²·3)`` rows: each image resized to ``side`` px and standardised (mean 0, norm 1)."""
    rows = []
    for img in np.asarray(images):
        small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
        small -= small.mean()
        rows.append(small / max(float(np.linalg.norm(small)), 1e-9))
    return np.stack(rows)


def memorisation_check(
    real: np.ndarray, synthetic: np.ndarray, *, ratio: float = RATIO, copy_distance: float = 1e-3
) -> list[Neighbour]:
    """Each synthetic feature row against the real ones (``n×d`` each, at least 2 real rows)."""
    real, synthetic = np.asarray(real, np.float64), np.asarray(synthetic, np.float64)
    if len(real) < 2:
        raise SettingError("the memorisation check needs at least 2 real images")
    sq = (synthetic**2).sum(1)[:, None] + (real**2).sum(1)[None, :] - 2 * synthetic @ real.T
    dist = np.sqrt(np.clip(sq, 0.0, None))
    order = np.argsort(dist, axis=1, kind="stable")[:, :2]
    out = []
    for i, (a, b) in enumerate(order):
        d1, d2 = float(dist[i, a]), float(dist[i, b])
        if d1 <= copy_distance:
            flagged, reason = True, "a copy of a real image"
        elif d1 < ratio * d2:
            flagged, reason = True, f"{d1 / d2:.2f}× closer to one real image than to the next"
        else:
            flagged, reason = False, ""
        out.append(Neighbour(i, int(a), d1, d2, flagged, reason))
    return out
