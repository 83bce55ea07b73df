"""Every JSON file demo, analyze, predict, evaluate and compare write is strict JSON: a value that cannot be
estimated is null, never NaN or Infinity (which no LIS, browser or jq reads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lablens.cli import app
from lablens.phantoms import write_phantoms

from conftest import write_shape_folder

runner = CliRunner()


def _walk(folder: Path) -> list[Path]:
    files = sorted(folder.rglob("*.json"))
    for f in files:

        def refuse(constant: str, f: Path = f) -> None:
            raise AssertionError(f"{f}: {constant} is not JSON")

        json.loads(f.read_text(encoding="utf-8"), parse_constant=refuse)
    return files


@pytest.mark.slow
def test_the_json_of_every_verb_is_strict(tmp_path: Path) -> None:
    out = tmp_path / "o"
    r = runner.invoke(
        app, ["demo", "--out", str(out / "demo"), "--n", "48", "--epochs", "1", "--image-size", "32", "--model",
              "resnet18", "--weights", "scratch", "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    bundle = next((out / "demo").rglob("card.json")).parent
    data = write_shape_folder(tmp_path / "shapes", per_class=12, size=32)
    write_phantoms("blood-cells", tmp_path / "fields", n=6, seed=2, fields=True, size=320)
    (data / "disc" / "blank.png").write_bytes(b"")  # a skipped file, and a class with nothing to estimate
    steps = [
        [
            "evaluate",
            str(bundle),
            str(data),
            "--out",
            str(out / "eval"),
        ],  # foreign classes: left out, refused
        ["predict", str(bundle), str(data), "--out", str(out / "pred.json")],
        ["compare", str(data), "--methods", "hu+lbp:logistic", "--folds", "2", "--out", str(out / "cmp")],
        ["analyze", str(bundle), str(data / "disc"), "--task", "nailfold", "--out", str(out / "analyze")],
        # no cell reaches the confidence threshold: nothing in the differential can be estimated
        ["analyze", str(bundle), str(tmp_path / "fields"), "--min-confidence", "1.0", "--um-per-px", "0.25",
         "--out", str(out / "smear")],
    ]  # fmt: skip
    for args in steps:
        r = runner.invoke(app, [*args, "-q"] if args[0] != "evaluate" else args)
        assert r.exit_code in (0, 1), r.output
        assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit))
    written = _walk(out)
    names = {f.name for f in written}
    assert {
        "metrics.json",
        "card.json",
        "pred.json",
        "samples.json",
        "analyze.json",
        "comparison.json",
    } <= names
    assert (out / "pred.json.yaml").is_file() and (out / "smear" / "analyze.yaml").is_file()  # their settings
    smear = json.loads((out / "smear" / "samples.json").read_text())["sample"]
    assert smear["n_identified"] == 0 and set(smear["percent"].values()) == {None}
