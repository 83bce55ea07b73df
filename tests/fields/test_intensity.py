"""Intensity scores follow the serum titer on phantom fields, and controls turn them into grades."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lablens.fields.detection import create_detector
from lablens.fields.intensity import IntensityScale, field_intensity, sample_intensity
from lablens.phantoms import ana_hep2 as ana

SIZE = 256


@pytest.mark.parametrize("pattern", ["homogeneous", "centromere", "fine_speckled", "nucleolar"])
def test_scores_order_a_titer_series(pattern: str) -> None:
    """One serum pattern on one slide under one camera setting, diluted 1:80 … 1:2560: the score must rise with
    the titer, and a negative well under the same setting must score below all of them."""
    style = ana.sample_style(np.random.default_rng(7))
    scores = []
    for titer_log2 in range(6):
        params = ana.sample_field(
            pattern, np.random.default_rng(11), {**style, "titer_log2": float(titer_log2)}
        )
        img, _ = ana.draw_field(params, SIZE)
        dets = create_detector("nuclei", um_per_px=params["field_um"] / SIZE).detect(img)
        scores.append(field_intensity(img, dets))
    negative = ana.sample_field("negative", np.random.default_rng(11), style)
    img, _ = ana.draw_field(negative, SIZE)
    neg = field_intensity(img, create_detector("nuclei", um_per_px=negative["field_um"] / SIZE).detect(img))
    assert all(b > a for a, b in itertools.pairwise(scores)), scores
    assert neg < scores[0]


def test_grades_from_controls() -> None:
    scale = IntensityScale.from_controls([4.0, 6.0, 5.0], [40.0, 44.0])
    assert (
        scale.grade(7.0) == "negative"
        and scale.grade(20.0) == "intermediate"
        and scale.grade(50.0) == "positive"
    )
    assert scale.relative(42.0) == pytest.approx(1.0)
    doc = sample_intensity([18.0, 22.0, 60.0], scale)
    assert doc["grade"] == "intermediate" and doc["score"] == 22.0
    assert sample_intensity([10.0], None)["grade"] is None
    with pytest.raises(ValueError, match="not brighter"):
        IntensityScale.from_controls([40.0], [5.0])
    assert np.isnan(sample_intensity([], scale)["score"])
