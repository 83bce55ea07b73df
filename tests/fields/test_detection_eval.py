"""Detection scoring: IoU, VOC-style greedy matching, per-class counts, VOC parsing."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lablens.evaluate.detection import Counts, iou_matrix, match, score_image
from lablens.fields.annotations import read_voc


def test_iou_matrix_exact_values() -> None:
    m = iou_matrix([(0, 0, 10, 10), (5, 0, 15, 10)], [(0, 0, 10, 10), (20, 20, 30, 30)])
    assert m[0, 0] == 1.0 and m[0, 1] == 0.0
    assert m[1, 0] == pytest.approx(50 / 150)
    assert iou_matrix([], [(0, 0, 1, 1)]).shape == (0, 1)


def test_match_takes_highest_score_first_and_each_truth_once() -> None:
    truth = [(0, 0, 10, 10)]
    pred = [(0, 0, 10, 9), (0, 0, 10, 10)]
    m = match(pred, [0.2, 0.9], truth)
    assert m.tolist() == [-1, 0]  # the confident one claims the box; the duplicate is a false positive
    assert match(pred, [0.9, 0.2], truth).tolist() == [0, -1]
    assert match([(0, 0, 4, 10)], [1.0], truth, iou_threshold=0.5).tolist() == [-1]  # IoU 0.4


def test_score_image_counts_per_class_and_ignores_others() -> None:
    pred = [("wbc", (0, 0, 10, 10), 1.0), ("wbc", (50, 50, 60, 60), 0.5), ("rbc", (0, 0, 5, 5), 1.0)]
    truth = [("wbc", (1, 1, 10, 10)), ("wbc", (100, 100, 110, 110)), ("platelet", (0, 0, 3, 3))]
    t = score_image(pred, truth, ["wbc"])
    assert (t["wbc"].tp, t["wbc"].fp, t["wbc"].fn) == (1, 1, 1)
    score_image(pred, truth, ["wbc"], totals=t)
    assert (t["wbc"].tp, t["wbc"].fp, t["wbc"].fn) == (2, 2, 2)
    assert t["wbc"].precision == 0.5 and t["wbc"].recall == 0.5 and t["wbc"].f1 == 0.5
    assert math.isnan(Counts().precision)


def test_read_voc_converts_to_zero_based_exclusive(tmp_path: Path) -> None:
    xml = tmp_path / "a.xml"
    xml.write_text(
        "<annotation><object><name>WBC</name><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>40</xmax>"
        "<ymax>50</ymax></bndbox></object><object><name>Platelets</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
    )
    got = read_voc(xml, {"Platelets": "platelet"})
    assert got == [("wbc", (10.0, 20.0, 40.0, 50.0)), ("platelet", (0.0, 0.0, 5.0, 5.0))]
    bad = tmp_path / "b.xml"
    bad.write_text("<annotation><object>")
    with pytest.raises(ValueError, match=r"b\.xml"):
        read_voc(bad)
    assert np.isfinite(got[0][1]).all()
