"""``lablens crop-cells`` → ``lablens train`` → ``lablens analyze``: one crop geometry from annotation to analysis."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lablens.cli import app
from lablens.phantoms import get_task
from lablens.phantoms.write import write_phantoms

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


def test_whole_cell_boxes_train_a_bundle_that_analyze_runs_with_the_cells_detector(tmp_path: Path) -> None:
    write_phantoms(get_task("ana-hep2-cyto"), tmp_path / "f", n=9, seed=2, fields=True, size=256)
    man = pd.read_csv(tmp_path / "f" / "manifest.csv", dtype=str)
    pd.DataFrame(
        {"path": "f/" + man["path"], "sample": man["group"], "um_per_px": man["field_um"].astype(float) / 256}
    ).to_csv(tmp_path / "fields.csv", index=False)
    labels = pd.read_csv(tmp_path / "f" / "cells.csv", dtype=str)  # whole cells, each with its pattern
    labels = labels[labels["pattern"] != "negative"]
    labels = labels.assign(path="f/" + labels["path"])
    labels[["path", "pattern", "x0", "y0", "x1", "y1"]].to_csv(tmp_path / "boxes.csv", index=False)
    r = runner.invoke(
        app,
        ["crop-cells", str(tmp_path / "fields.csv"), "--annotations", str(tmp_path / "boxes.csv"), "--label",
         "pattern", "--whole-cells", "--out", str(tmp_path / "cells"), "--image-size", "32", "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    geometry = json.loads((tmp_path / "cells" / "crop_geometry.json").read_text())
    assert geometry["object"] == "cell" and geometry["side_um"] == 30.0
    r = runner.invoke(
        app,
        ["train", str(tmp_path / "cells"), "--out", str(tmp_path / "run"), "--model", "handcrafted",
         "--image-size", "32", "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        ["analyze", str(tmp_path / "run" / "bundle"), str(tmp_path / "fields.csv"), "--task", "ana",
         "--out", str(tmp_path / "a")],
    )  # fmt: skip
    assert r.exit_code == 0 and "warning" not in r.output, r.output
    assert "whole cells detected" in r.output
    settings = json.loads((tmp_path / "a" / "analyze.json").read_text())
    assert settings["detector"] == "cells" and settings["crop_um"] == 30.0
    docs = json.loads((tmp_path / "a" / "samples.json").read_text())
    positive = [d for d in docs.values() if d["result"] == "positive"]
    assert positive and all(
        d["compartments"]["cytoplasmic"]["icap"] in {"AC-15,16,17", "AC-21"} for d in positive
    )
