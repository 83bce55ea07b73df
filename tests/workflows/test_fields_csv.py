"""``lablens fields-csv``: the slide-label CSVs and field folders labs have → the fields CSV the verbs read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lablens.cli import app
from lablens.phantoms import get_task
from lablens.phantoms.write import write_phantoms

runner = CliRunner()


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fields named like the ANA fields (``ACA-2.jpg``, ``ACA-2-t.jpg``: two fields of slide ACA-2) with a
    ``path,slide_label`` CSV, as ``../shared/data/ana-fields`` ships them."""
    root = tmp_path_factory.mktemp("slides")
    write_phantoms(get_task("ana-hep2"), root / "ph", n=56, seed=6, fields=True, size=256)
    man = pd.read_csv(root / "ph" / "manifest.csv", dtype=str)
    man = man[man["label"].isin(["centromere", "homogeneous"])].reset_index(drop=True)
    code = {"centromere": "ACA", "homogeneous": "HOM"}
    rows, seen = [], {}
    (root / "fields").mkdir()
    for _, r in man.iterrows():
        k = seen.get(r["label"], 0)
        seen[r["label"]] = k + 1
        name = f"{code[r['label']]}-{k // 2 + 1}{'-t' if k % 2 else ''}.png"
        shutil.copy(root / "ph" / r["path"], root / "fields" / name)
        rows.append({"path": name, "slide_label": code[r["label"]]})
    pd.DataFrame(rows).to_csv(root / "fields" / "labels.csv", index=False)
    return root


def test_slide_labels_and_a_sample_rule_become_a_fields_csv_train_reads(slides: Path, tmp_path: Path) -> None:
    out = tmp_path / "fields.csv"
    r = runner.invoke(
        app, ["fields-csv", str(slides / "fields" / "labels.csv"), "-o", str(out), "--sample-regex",
              r"^([A-Z]+-\d+)", "--um-per-px", "0.35"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out, dtype=str)
    assert list(table.columns) == ["path", "sample", "label", "um_per_px"]
    assert set(table.loc[table["path"].str.endswith("ACA-1-t.png"), "sample"]) == {"ACA-1"}
    assert (
        (table.groupby("sample").size() <= 2).all()
        and table["sample"].nunique() < len(table)
        and all((tmp_path / p).is_file() for p in table["path"])
    )
    assert "samples from regex" in r.output and "labels from column 'slide_label'" in r.output
    (tmp_path / "c.yaml").write_text(
        "model:\n  params: {model_name: test_resnet, cells_per_bag: 4, bags_per_sample: 2}\n"
        "train: {epochs: 1, augment: null, patience: null}\neval: {bootstrap: 20}\n"
    )
    r = runner.invoke(
        app,
        ["train", str(out), "--out", str(tmp_path / "run"), "--label-level", "sample", "--task", "ana",
         "--image-size", "32", "--split", "2:1:1", "--config", str(tmp_path / "c.yaml"), "--device", "cpu", "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "bundle" / "card.json").is_file()


def test_bad_rules_are_refused_naming_what_is_wrong(slides: Path, tmp_path: Path) -> None:
    labels = str(slides / "fields" / "labels.csv")
    r = runner.invoke(
        app, ["fields-csv", labels, "-o", str(tmp_path / "a.csv"), "--sample-regex", "^P(\\d+)"]
    )
    assert r.exit_code == 1 and "matched 0 of" in r.output and "ACA-1" in r.output
    r = runner.invoke(app, ["fields-csv", labels, "-o", str(tmp_path / "d.csv"), "--sample-regex", "(\\d)"])
    assert r.exit_code == 1 and "has fields labelled ACA and HOM" in r.output
    r = runner.invoke(app, ["fields-csv", labels, "-o", str(tmp_path / "e.csv"), "--label-column", "nope"])
    assert r.exit_code == 1 and "--label-column 'nope': not a column" in r.output
    (tmp_path / "taken.csv").write_text("mine")
    r = runner.invoke(app, ["fields-csv", labels, "-o", str(tmp_path / "taken.csv")])
    assert r.exit_code == 1 and "exists" in r.output and (tmp_path / "taken.csv").read_text() == "mine"


def test_a_folder_of_class_folders_gives_labels_and_one_sample_per_field(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / "src" / label).mkdir(parents=True)
        for i in range(2):
            shutil.copy(
                Path(__file__).parents[2] / "docs" / "fields" / "ana_nuclei.jpg",
                tmp_path / "src" / label / f"{label}{i}.jpg",
            )
    r = runner.invoke(app, ["fields-csv", str(tmp_path / "src"), "-o", str(tmp_path / "f.csv"), "-q"])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp_path / "f.csv", dtype=str)
    assert sorted(table["sample"]) == ["a0", "a1", "b0", "b1"] and sorted(set(table["label"])) == ["a", "b"]
