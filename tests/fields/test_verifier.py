"""The white-cell verifier: fitted on phantom fields, it beats the colour rules on other phantom fields."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lablens.fields.detection import create_detector
from lablens.fields.verifier import (
    CLASSIFIER_FEATURES,
    EXTENT_FEATURES,
    TrainingField,
    WbcVerifier,
    candidates,
    load_verifier,
)
from lablens.fields.verifier_fit import fit_wbc_verifier
from lablens.phantoms import get_task
from lablens.phantoms.blood_smear import WBC_CLASSES
from lablens.phantoms.write import write_phantoms
from lablens.workflows.fit_verifier import score_wbc

SIZE = 320


def _fields(root: Path, n: int, seed: int) -> list[TrainingField]:
    write_phantoms(get_task("blood-cells"), root, n=n, seed=seed, fields=True, size=SIZE)
    man = pd.read_csv(root / "manifest.csv")
    cells = pd.read_csv(root / "cells.csv")
    cells = cells[cells["label"].isin(WBC_CLASSES)]
    out = []
    for row in man.itertuples():
        boxes = [tuple(b) for b in cells[cells["path"] == row.path][["x0", "y0", "x1", "y1"]].to_numpy()]
        img = np.asarray(Image.open(root / row.path).convert("RGB"))
        out.append(TrainingField(img, row.field_um / SIZE, boxes, row.path))
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("verifier")
    train, test = _fields(root / "train", 30, seed=11), _fields(root / "test", 12, seed=7)
    verifier = fit_wbc_verifier(train, rounds=150)
    return {"root": root, "train": train, "test": test, "verifier": verifier}


def test_candidate_features_have_the_declared_width(data: dict) -> None:
    f = data["test"][0]
    det = create_detector("smear", um_per_px=f.um_per_px)
    cands = candidates(det, f.image, 32.0, 8.0)
    assert cands, "a phantom field holds white cells"
    from lablens.fields.verifier import classifier_row, extent_row

    assert len(classifier_row(cands[0])) == len(CLASSIFIER_FEATURES)
    assert len(extent_row(cands[0], "left", f.um_per_px)) == len(EXTENT_FEATURES)


def test_fitted_verifier_beats_the_rules_on_unseen_fields(data: dict, tmp_path: Path) -> None:
    info = data["verifier"].info
    assert info["candidate_recall"] > 0.95 and info["positives"] > 50
    path = data["verifier"].save(tmp_path / "v.json")
    rules = score_wbc(data["test"])["f1"]
    learned = score_wbc(data["test"], {"verifier": str(path)})["f1"]
    assert learned >= 0.95, (rules, learned)
    assert learned > rules


def test_saved_verifier_replays_exactly_and_is_not_pickle(data: dict, tmp_path: Path) -> None:
    path = data["verifier"].save(tmp_path / "v.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "lablens-wbc-verifier/1" and doc["info"]["positives"] > 0
    f = data["test"][1]
    a = data["verifier"].detect(create_detector("smear", um_per_px=f.um_per_px), f.image)
    b = load_verifier(path).detect(create_detector("smear", um_per_px=f.um_per_px), f.image)
    assert [(d.box, round(d.score, 9)) for d in a] == [(d.box, round(d.score, 9)) for d in b]
    with pytest.raises(FileExistsError):
        data["verifier"].save(path)


def test_fitting_twice_gives_the_same_model(data: dict) -> None:
    again = fit_wbc_verifier(data["train"][:12], rounds=30)
    once = fit_wbc_verifier(data["train"][:12], rounds=30)
    assert again.classifier.model_to_string() == once.classifier.model_to_string()


def test_bad_verifier_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json"):
        WbcVerifier.load(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a lablens white-cell verifier"):
        WbcVerifier.load(other)
    det = create_detector("smear", um_per_px=0.2, verifier=str(tmp_path / "missing.json"))
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        det.detect(np.full((64, 64, 3), 200, np.uint8))


def test_too_few_examples_is_a_clear_error(data: dict) -> None:
    blank = TrainingField(np.full((200, 200, 3), 230, np.uint8), 0.2, [(10, 10, 50, 50)])
    with pytest.raises(ValueError, match="too few examples"):
        fit_wbc_verifier([blank, blank])
