"""``lablens crop-cells`` → ``lablens train`` → ``lablens analyze``: one crop geometry from annotation to analysis."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lablens.cli import app
from lablens.data.phantoms import get_task
from lablens.data.phantoms.write import write_phantoms

runner = CliRunner()
SIZE = 192


@pytest.fixture(scope="module")
def fields(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crop")
    write_phantoms(get_task("ana-hep2"), root / "f", n=24, seed=5, fields=True, size=SIZE)
    man = pd.read_csv(root / "f" / "manifest.csv", dtype=str)
    pd.DataFrame(
        {
            "path": "f/" + man["path"],
            "sample": man["group"],
            "um_per_px": man["field_um"].astype(float) / SIZE,
        }
    ).to_csv(root / "fields.csv", index=False)
    return root


def test_annotated_boxes_become_a_dataset_that_carries_its_crop_geometry(
    fields: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cells"
    r = runner.invoke(
        app,
        ["crop-cells", str(fields / "fields.csv"), "--annotations", str(fields / "f" / "annotations.json"),
         "--label", "pattern", "--out", str(out), "--image-size", "32", "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    man = pd.read_csv(out / "manifest.csv", dtype=str)
    truth = pd.read_csv(fields / "f" / "cells.csv")
    assert len(man) == len(truth) and set(man["label"]) == set(truth["pattern"])
    assert man["group"].str.startswith("P").all() and all((out / p).is_file() for p in man["path"])
    geometry = json.loads((out / "crop_geometry.json").read_text())
    assert geometry["side_um"] == 24.0 and geometry["object"] == "nucleus" and geometry["image_size"] == 32

    run = tmp_path / "run"
    r = runner.invoke(
        app, ["train", str(out), "--out", str(run), "--model", "handcrafted", "--image-size", "32", "-q"]
    )
    assert r.exit_code == 0, r.output
    card = json.loads((run / "bundle" / "card.json").read_text())
    assert card["preprocessing"]["crop"]["side_um"] == 24.0

    r = runner.invoke(
        app,
        ["analyze", str(run / "bundle"), str(fields / "fields.csv"), "--task", "ana", "--out", str(tmp_path / "a"), "-q"],
    )  # fmt: skip
    assert r.exit_code == 0 and "warning" not in r.output, r.output


def test_coco_from_another_folder_and_a_box_csv_match_fields_by_path(fields: Path, tmp_path: Path) -> None:
    r = runner.invoke(
        app,
        ["crop-cells", str(fields / "fields.csv"), "--annotations", str(fields / "f" / "cells.csv"),
         "--label", "phase", "--out", str(tmp_path / "c"), "--image-size", "32", "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    labels = set(pd.read_csv(tmp_path / "c" / "manifest.csv")["label"])
    assert labels <= {"interphase", "metaphase", "prophase", "anaphase"}
    r = runner.invoke(
        app,
        ["crop-cells", str(fields / "fields.csv"), "--annotations", str(tmp_path / "nope.json"), "--out",
         str(tmp_path / "d")],
    )  # fmt: skip
    assert r.exit_code == 1 and "no such file" in r.output
