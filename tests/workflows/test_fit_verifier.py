"""``lablens fit-verifier`` on phantom fields, then ``lablens analyze --verifier`` with the fitted file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lablens.cli import app
from lablens.config import RunConfig
from lablens.errors import RunError
from lablens.phantoms import get_task
from lablens.phantoms.write import write_phantoms
from lablens.workflows.analyze import analyze
from lablens.workflows.fit_verifier import fit_verifier
from lablens.workflows.train import train

from conftest import folder_digest

runner = CliRunner()
SIZE = 320


@pytest.fixture(scope="module")
def fields(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fitv")
    write_phantoms(get_task("blood-cells"), root / "f", n=30, seed=5, fields=True, size=SIZE)
    man = pd.read_csv(root / "f" / "manifest.csv")
    (root / "f" / "broken.png").write_bytes(b"not an image")
    extra = root / "f" / "no_truth.png"
    extra.write_bytes((root / "f" / man["path"][0]).read_bytes())
    csv = root / "fields.csv"
    rows = pd.DataFrame({"path": "f/" + man["path"], "um_per_px": man["field_um"] / SIZE})
    rows = pd.concat([rows, pd.DataFrame({"path": ["f/broken.png", "f/no_truth.png"], "um_per_px": 0.3})])
    rows.to_csv(csv, index=False)
    return {"root": root, "csv": csv, "truth": root / "f" / "cells.csv"}


def test_cli_fits_measures_on_held_out_fields_and_skips_bad_ones(
    fields: dict[str, Path], tmp_path: Path
) -> None:
    before = folder_digest(fields["root"] / "f")
    out = tmp_path / "wbc.json"
    r = runner.invoke(
        app, ["fit-verifier", str(fields["csv"]), "--truth", str(fields["truth"]), "-o", str(out), "-q"]
    )
    assert r.exit_code == 0, r.output
    info = json.loads(out.read_text())["info"]
    held = info["holdout"]
    assert held["fields"] == 6 and info["fields"] == 30 and info["skipped"] == 2
    assert held["verifier"]["f1"] >= 0.9 and held["verifier"]["f1"] >= held["rules"]["f1"] - 0.02
    assert folder_digest(fields["root"] / "f") == before  # inputs are only read
    r = runner.invoke(
        app, ["fit-verifier", str(fields["csv"]), "--truth", str(fields["truth"]), "-o", str(out), "-q"]
    )
    assert r.exit_code != 0 and "exists" in r.output


def test_skipped_fields_are_named_with_their_reason(fields: dict[str, Path], tmp_path: Path) -> None:
    res = fit_verifier([fields["csv"]], fields["truth"], tmp_path / "v.json", holdout=0, progress=False)
    reasons = {Path(s.path).name: s.kind for s in res.skipped}
    assert reasons == {"no_truth.png": "no_truth", "broken.png": reasons["broken.png"]}
    assert reasons["broken.png"] != "no_truth" and res.holdout is None


def test_a_broken_annotation_file_is_skipped_and_named(fields: dict[str, Path], tmp_path: Path) -> None:
    cells = pd.read_csv(fields["truth"])
    voc = tmp_path / "voc"
    voc.mkdir()
    for path, objs in cells.groupby("path"):
        boxes = "".join(
            f"<object><name>{o.label}</name><bndbox><xmin>{o.x0 + 1}</xmin><ymin>{o.y0 + 1}</ymin>"
            f"<xmax>{o.x1}</xmax><ymax>{o.y1}</ymax></bndbox></object>"
            for o in objs.itertuples()
        )
        (voc / f"{Path(path).stem}.xml").write_text(f"<annotation>{boxes}</annotation>")
    broken = sorted(voc.glob("*.xml"))[0]
    broken.write_text("<annotation><object>")  # cut short
    res = fit_verifier([fields["csv"]], voc, tmp_path / "v.json", holdout=0, progress=False)
    bad = [s for s in res.skipped if s.kind == "bad_truth"]
    assert len(bad) == 1 and Path(bad[0].path).stem == broken.stem and broken.name in bad[0].reason
    assert res.verifier.info["fields"] == 29


def test_fit_verifier_needs_a_scale_and_usable_truth(fields: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(RunError, match="um-per-px"):
        fit_verifier([fields["root"] / "f"], fields["truth"], tmp_path / "a.json", progress=False)
    bad = tmp_path / "truth.csv"
    bad.write_text("file,label\n")
    with pytest.raises(RunError, match="truth CSV needs columns"):
        fit_verifier([fields["csv"]], bad, tmp_path / "b.json", progress=False)
    with pytest.raises(RunError, match="Pascal VOC"):
        fit_verifier([fields["csv"]], tmp_path / "nothing.txt", tmp_path / "c.json", progress=False)


def test_analyze_uses_the_verifier_and_records_it(fields: dict[str, Path], tmp_path: Path) -> None:
    verifier = fit_verifier(
        [fields["csv"]], fields["truth"], tmp_path / "v.json", holdout=0, progress=False
    ).path
    cells = tmp_path / "cells"
    write_phantoms(get_task("blood-cells"), cells, n=80, seed=1, size=48)
    cfg = RunConfig()
    cfg.model.name, cfg.model.image_size = "handcrafted", 48
    cfg.train.threads = 1
    cfg.eval.bootstrap = 0
    bundle = train(cells, tmp_path / "run", cfg, progress=False).bundles[0]
    res = analyze(bundle, [fields["csv"]], tmp_path / "out", min_cells=5, verifier=verifier, progress=False)
    wbc = res.cells[res.cells["kind"] == "wbc"]
    assert len(wbc) > 50 and wbc["verifier"].all()
    assert json.loads((tmp_path / "out" / "analyze.json").read_text())["detector_kwargs"]["verifier"] == str(
        verifier
    )
    with pytest.raises(RunError, match="blood smear"):
        analyze(bundle, [fields["csv"]], tmp_path / "o2", task="ana", verifier=verifier, progress=False)
    with pytest.raises(RunError, match=r"missing\.json"):
        analyze(bundle, [fields["csv"]], tmp_path / "o3", verifier=tmp_path / "missing.json", progress=False)
