"""The detector learned from boxes finds the whole cells of cytoplasmic IIF fields, and lives as a bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lablens.data.io import read_image
from lablens.fields.detection import create_detector
from lablens.fields.learned import LearnedDetector
from lablens.infer.bundle import BundleError, load_bundle

from conftest import CYTO_SIZE, cyto_phantom_fields, cyto_recall


def test_whole_cells_are_found_on_unseen_cytoplasmic_fields(learned_cells: Path, tmp_path: Path) -> None:
    test_fields = cyto_phantom_fields(tmp_path / "test", n=6, seed=0)  # the fields the rule-based test scores
    recall = cyto_recall(test_fields, "learned", bundle=str(learned_cells))
    # the issue asks recall >= 0.9 at box IoU >= 0.5. Measured here: 0.951 fibrillar / 0.991 mitochondrial
    # (the rule-based `cells` detector: 0.894 / 0.923); benchmarks/learned_cells.py: 0.99 / 0.98 on 15 fields
    assert min(recall.values()) >= 0.9, recall


def test_the_bundle_records_the_detector_and_gives_the_same_cells(
    learned_cells: Path, tmp_path: Path
) -> None:
    card = json.loads((learned_cells / "card.json").read_text())
    assert card["detector"]["name"] == "learned" and card["detector"]["objects"] == "cell"
    assert "um_per_px" not in card["detector"]["params"] and card["model"]["stride"] == 4
    field = cyto_phantom_fields(tmp_path / "one", n=3, seed=5)
    man = pd.read_csv(field / "manifest.csv", dtype=str)
    row = man[man["label"] != "negative"].iloc[0]
    img = read_image(field / row.path).pixels
    det = create_detector("learned", um_per_px=float(row.field_um) / CYTO_SIZE, bundle=str(learned_cells))
    found = det.detect(img)
    assert found and all(d.label == "cell" for d in found)
    again = create_detector("learned", **det.get_params()).detect(img)
    assert [(d.box, d.score) for d in again] == [(d.box, d.score) for d in found]
    cut = (0, 0, img.shape[1] // 2, img.shape[0])  # leave the left half out
    kept = det.set_params(ignore_regions=[cut]).detect(img)
    assert kept and all((d.box[0] + d.box[2]) / 2 >= cut[2] for d in kept) and len(kept) < len(found)


def test_a_detector_bundle_is_not_a_classifier_and_the_other_way_round(
    learned_cells: Path, tmp_path: Path
) -> None:
    with pytest.raises(BundleError, match="field-detector bundle"):
        load_bundle(learned_cells)
    with pytest.raises(BundleError, match="no such detector bundle"):
        create_detector("learned", um_per_px=0.4, bundle=str(tmp_path / "nope")).detect(
            np.zeros((64, 64, 3), np.uint8)
        )


def test_an_untrained_detector_says_what_it_needs() -> None:
    with pytest.raises(ValueError, match="not trained"):
        LearnedDetector(um_per_px=0.4).detect(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="field scale"):
        LearnedDetector().detect(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="2 fields but 1 box lists"):
        LearnedDetector(um_per_px=0.4).fit([np.zeros((64, 64, 3), np.uint8)] * 2, [[]])
