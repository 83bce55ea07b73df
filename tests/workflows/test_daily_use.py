"""What a lab meets on day one: no traceback and no NaN on inputs that give nothing to report, counts that say
what was found and what was held back, and advice when nothing could be called (issue 30, items 6 and 7)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lablens.cli import app
from lablens.config import RunConfig
from lablens.phantoms import write_phantoms
from lablens.workflows.train import train

from conftest import tiny_bundle, write_shape_folder

runner = CliRunner()


def _strict(path: Path) -> object:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path}: non-strict JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A bundle trained on shapes, and blood smear fields: every white cell on them is out of distribution."""
    root = tmp_path_factory.mktemp("foreign")
    write_shape_folder(root / "shapes", per_class=12, size=48)
    cfg = RunConfig()
    cfg.model.name, cfg.model.image_size = "handcrafted", 48
    cfg.train.threads, cfg.eval.bootstrap = 1, 0
    bundle = train(root / "shapes", root / "run", cfg, progress=False).bundles[0]
    write_phantoms("blood-cells", root / "f", n=6, seed=2, fields=True, size=320)
    man = pd.read_csv(root / "f" / "manifest.csv")
    rows = pd.DataFrame({"path": "f/" + man["path"], "sample": "S-0412", "um_per_px": man["field_um"] / 320})
    rows.head(4).to_csv(root / "fields.csv", index=False)
    return {"root": root, "bundle": bundle, "csv": root / "fields.csv", "fields": root / "f"}


def test_predict_with_no_usable_image_is_one_line_naming_the_counts(tmp_path: Path) -> None:
    bundle, _ = tiny_bundle(tmp_path / "b")
    (tmp_path / "fake.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("lab notes")
    r = runner.invoke(
        app, ["predict", str(bundle), str(tmp_path / "fake.jpg"), str(tmp_path / "notes.txt"), "--out",
              str(tmp_path / "p.csv")],
    )  # fmt: skip
    assert r.exit_code == 1 and (r.exception is None or isinstance(r.exception, SystemExit)), r.exception
    line = " ".join(r.output.split())
    assert line.startswith("error: no usable image: all 2 input(s) were skipped (2 not image)"), line
    assert "fake.jpg" in line and "notes.txt" in line and "Traceback" not in r.output
    assert not (tmp_path / "p.csv").exists()


def test_analyze_with_no_readable_field_is_one_line(tmp_path: Path, foreign: dict[str, Path]) -> None:
    (tmp_path / "a.png").write_bytes(b"broken")
    r = runner.invoke(
        app, ["analyze", str(foreign["bundle"]), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "-q"]
    )
    assert r.exit_code == 1 and "no usable image: all 1 input(s) were skipped" in " ".join(r.output.split())
    assert not (tmp_path / "o").exists()


def test_a_fully_held_back_sample_says_so_without_nan(tmp_path: Path, foreign: dict[str, Path]) -> None:
    out = tmp_path / "o"
    r = runner.invoke(app, ["analyze", str(foreign["bundle"]), str(foreign["csv"]), "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    doc = _strict(out / "samples.json")["S-0412"]
    fields = pd.read_csv(out / "fields.csv")
    assert doc["n_found"] == int(fields["n_wbc"].sum()) > 0 and doc["n_out_of_distribution"] == doc["n_found"]
    assert doc["objects_found"]["platelet"] == int(fields["n_platelet"].sum())
    assert all(v is None for v in doc["percent"].values()) and all(v is None for v in doc["ci95"].values())
    assert doc["flags"][0].startswith(f"no result: all {doc['n_found']} cell(s) were held back")
    assert "train a model on this laboratory's own images" in doc["flags"][0]
    assert doc["out_of_distribution"]["flagged"] is True
    html = (out / "report.html").read_text()
    text = re.sub(r"data:image/png;base64,[^\"]*", "", html)
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    assert f"{doc['n_found']} white cell(s) found in 4 field(s)" in html
    assert f"platelet {doc['objects_found']['platelet']}" in html and "platelet 0" not in html
    assert "No differential: no white cell was identified" in html
    line = " ".join(r.output.split())  # -q: no progress, but each sample's summary
    assert (
        f"S-0412: 0 of {doc['n_found']} white cell(s) identified, {doc['n_found']} held back — no differential"
        in line
    )
    assert "no result: all" in line
