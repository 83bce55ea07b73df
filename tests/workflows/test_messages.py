"""Messages that must not mislead (issue 30, item 8): groups when there are no patient ids, images left out of
an evaluation because the model saw them, annotation folders given where labelled cells are wanted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lablens.cli import app

from conftest import write_shape_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("msg")
    data = write_shape_folder(root / "shapes", per_class=12, size=40)
    r = runner.invoke(app, ["train", str(data), "--out", str(root / "run"), "--model", "handcrafted", "-q"])
    assert r.exit_code == 0, r.output
    return data, root / "run"


def test_a_report_without_patient_ids_does_not_count_patients(run: tuple[Path, Path], tmp_path: Path) -> None:
    data, out = run
    html = (out / "report.html").read_text()
    assert "no patient ids: <b>each image is its own group</b>" in html and "groups (patients" not in html
    grouped = tmp_path / "g"
    r = runner.invoke(
        app, ["train", str(data), "--out", str(grouped), "--model", "handcrafted", "--group-regex", r"_\d\d(\d)", "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    html = next(grouped.rglob("report.html")).read_text()
    assert "groups (patients, from regex" in html


def test_evaluate_says_in_one_line_which_images_it_left_out(run: tuple[Path, Path], tmp_path: Path) -> None:
    data, out = run
    r = runner.invoke(app, ["evaluate", str(out / "bundle"), str(data), "--out", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    assert "used to train or validate" not in r.output and "skipped" not in r.output.replace("0 skipped", "")
    line = " ".join(r.output.split())
    assert "image(s) the model was trained or validated on are left out of this evaluation" in line
    doc = json.loads((tmp_path / "e" / "data_report.json").read_text())
    assert doc["counts_by_kind"]["seen_in_training"] > 0  # still listed, file by file, in the JSON


def test_validate_data_names_a_voc_or_coco_folder_and_the_verb_that_reads_it(tmp_path: Path) -> None:
    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    write_shape_folder(voc / "JPEGImages" / "x", per_class=1)  # images a naive reader would take for a class
    (voc / "Annotations" / "a.xml").write_text("<annotation><object><name>WBC</name></object></annotation>")
    r = runner.invoke(app, ["validate-data", str(voc)])
    line = " ".join(r.output.split())
    assert r.exit_code == 1 and "is a Pascal VOC folder" in line and "lablens crop-cells" in line, line
    assert "JPEGImages 1" not in line
    coco = tmp_path / "coco"
    write_shape_folder(coco, per_class=1)
    (coco / "instances.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    r = runner.invoke(app, ["validate-data", str(coco)])
    assert r.exit_code == 1 and "is a COCO folder" in r.output and "crop-cells" in r.output
    r = runner.invoke(app, ["train", str(voc), "--out", str(tmp_path / "t"), "-q"])
    assert r.exit_code == 1 and "is a Pascal VOC folder" in r.output and not (tmp_path / "t").exists()
