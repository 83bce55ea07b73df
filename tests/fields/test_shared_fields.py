"""Acceptance checks on ../shared/data: BCCD white-cell detection and nuclei on every ANA field."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from lablens.evaluate.detection import score_image
from lablens.fields.annotations import read_voc
from lablens.fields.detection import create_detector
from lablens.fields.verifier import TrainingField
from lablens.fields.verifier_fit import fit_wbc_verifier

from conftest import shared_data

pytestmark = pytest.mark.shared_data

ANA_BAR = (0, 0, 420, 80)  # the burned-in scale bar and its label, top left of every ana-fields image


def _rgb(path: Path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_bccd_test_list_white_cell_recall_and_precision() -> None:
    root = shared_data("bccd")
    det = create_detector("smear", um_per_px=0.075, find_rbc=False)
    totals: dict = {}
    for stem in (root / "ImageSets" / "Main" / "test.txt").read_text().split():
        truth = read_voc(root / "Annotations" / f"{stem}.xml")
        found = det.detect(_rgb(root / "JPEGImages" / f"{stem}.jpg"))
        score_image([(d.label, d.box, d.score) for d in found], truth, ["wbc"], totals=totals)
    wbc = totals["wbc"]
    assert wbc.recall >= 0.95 and wbc.precision >= 0.90, wbc.as_dict()


def test_bccd_verifier_fitted_on_train_val_holds_on_the_test_list(tmp_path: Path) -> None:
    root = shared_data("bccd")

    def fields(name: str) -> list[TrainingField]:
        stems = (root / "ImageSets" / "Main" / f"{name}.txt").read_text().split()
        return [
            TrainingField(
                _rgb(root / "JPEGImages" / f"{s}.jpg"),
                0.075,
                [b for lab, b in read_voc(root / "Annotations" / f"{s}.xml") if lab == "wbc"],
                s,
            )
            for s in stems
        ]

    path = fit_wbc_verifier(fields("train") + fields("val")).save(tmp_path / "bccd.json")
    totals: dict = {}
    for f in fields("test"):
        found = create_detector("smear", um_per_px=0.075, find_rbc=False, verifier=str(path)).detect(f.image)
        score_image(
            [(d.label, d.box, d.score) for d in found if d.label == "wbc"],
            [("wbc", b) for b in f.boxes],
            ["wbc"],
            totals=totals,
        )
    wbc = totals["wbc"]
    assert wbc.recall >= 0.95 and wbc.precision >= 0.90, wbc.as_dict()


def test_nuclei_found_on_every_ana_field() -> None:
    root = shared_data("ana-fields")
    det = create_detector("nuclei", um_per_px=0.093, ignore_regions=[ANA_BAR])
    fields = sorted(root.glob("*.jpg"))
    assert len(fields) == 31
    counts = {f.name: len(det.detect(_rgb(f))) for f in fields}
    assert min(counts.values()) >= 10, counts
