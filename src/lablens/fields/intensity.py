"""Fluorescence intensity of an IIF field and its grade against the lab's own controls.

The score of a field is the median over its detected objects of each object's bright signal (the 90th
percentile of the raw channel inside its box) above the field's background (the 5th percentile of the field), in
the camera's 0–255 units; with no object found it is the field's 99th percentile above background. Scores are
only comparable under one camera setting, which is why they are graded against control wells imaged the same way
(:class:`IntensityScale`): a negative control and a positive control at the lab's screening cut-off.

Grades: ``negative`` when the score is within the negative control's spread (mean + 3 sd, at least a tenth of the
way to the positive control), ``positive`` from the positive control's score on, ``intermediate`` between. A
sample is graded by the median of its fields' scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from lablens.errors import SettingError
from lablens.fields.detection import Detection
from lablens.fields.fluorescence import CHANNELS

GRADES = ("negative", "intermediate", "positive")


def field_intensity(image: np.ndarray, detections: Sequence[Detection], channel: str = "green") -> float:
    """The field's intensity score (see the module docstring)."""
    img = np.asarray(image)
    g = img.mean(axis=2) if channel == "grey" else img[..., CHANNELS[channel]]
    g = g.astype(np.float32)
    background = float(np.percentile(g, 5))
    bright = [
        float(np.percentile(g[y0:y1, x0:x1], 90))
        for x0, y0, x1, y1 in (d.box for d in detections)
        if x1 > x0 and y1 > y0
    ]
    level = float(np.median(bright)) if bright else float(np.percentile(g, 99))
    return round(max(0.0, level - background), 3)


@dataclass(frozen=True)
class IntensityScale:
    """Grade thresholds from control wells: mean and sd of the negative controls, mean of the positive ones."""

    negative_mean: float
    negative_sd: float
    positive_mean: float
    n_negative: int
    n_positive: int

    @classmethod
    def from_controls(cls, negative: Sequence[float], positive: Sequence[float]) -> IntensityScale:
        if not len(negative) or not len(positive):
            raise SettingError("intensity controls need at least one negative and one positive control field")
        neg, pos = np.asarray(negative, float), np.asarray(positive, float)
        if pos.mean() <= neg.mean():
            raise SettingError(
                f"the positive controls ({pos.mean():.1f}) are not brighter than the negative ones ({neg.mean():.1f})"
            )
        return cls(
            float(neg.mean()),
            float(neg.std(ddof=1)) if len(neg) > 1 else 0.0,
            float(pos.mean()),
            len(neg),
            len(pos),
        )

    @property
    def negative_limit(self) -> float:
        return self.negative_mean + max(3 * self.negative_sd, 0.1 * (self.positive_mean - self.negative_mean))

    def relative(self, score: float) -> float:
        """0 at the negative controls, 1 at the positive (cut-off) controls."""
        return (score - self.negative_mean) / (self.positive_mean - self.negative_mean)

    def grade(self, score: float) -> str:
        if score <= self.negative_limit:
            return "negative"
        return "positive" if score >= self.positive_mean else "intermediate"

    def to_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "negative_limit": round(self.negative_limit, 3)}


def sample_intensity(scores: Sequence[float], scale: IntensityScale | None) -> dict[str, object]:
    """A sample's intensity: the median field score, its grade and relative level when controls were given."""
    score = float(np.median(scores)) if len(scores) else float("nan")
    doc: dict[str, object] = {"score": round(score, 3), "n_fields": len(scores)}
    if scale is None:
        doc["grade"] = None
        doc["note"] = "not graded: give negative and positive control fields (--controls)"
    else:
        doc["grade"] = scale.grade(score)
        doc["relative_to_cutoff"] = round(scale.relative(score), 3)
    return doc
