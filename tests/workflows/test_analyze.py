"""``lablens analyze`` end to end on phantom smear fields with a small single-cell bundle."""

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
from lablens.workflows.analyze import AnalyzeConfig, analyze
from lablens.workflows.train import train

from conftest import folder_digest, require_ray

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("analyze")
    task = get_task("blood-cells")
    write_phantoms(task, root / "cells", n=80, seed=1, size=48)
    write_phantoms(task, root / "fields", n=5, seed=2, fields=True, size=320)
    cfg = RunConfig()
    cfg.model.name, cfg.model.image_size = "handcrafted", 48
    cfg.train.threads = 1
    cfg.eval.bootstrap = 0
    run = train(root / "cells", root / "run", cfg, progress=False)
    man = pd.read_csv(root / "fields" / "manifest.csv")
    csv = root / "fields.csv"
    pd.DataFrame(
        {
            "path": "fields/" + man["path"],
            "sample": ["A", "A", "B", "B", "B"],
            "um_per_px": man["field_um"] / 320,
        }
    ).to_csv(csv, index=False)
    return {"root": root, "bundle": run.bundles[0], "csv": csv, "fields": root / "fields"}


def test_analyze_writes_cells_samples_overlays_and_report(setup: dict[str, Path], tmp_path: Path) -> None:
    before = folder_digest(setup["fields"])
    res = analyze(
        setup["bundle"], [setup["csv"]], tmp_path / "out", task="blood", min_cells=5, progress=False
    )
    out = tmp_path / "out"
    for name in ("cells.csv", "fields.csv", "samples.json", "analyze.json", "report.html"):
        assert (out / name).is_file(), name
    assert len(list((out / "overlays").glob("*.png"))) == 5
    cells = pd.read_csv(out / "cells.csv")
    wbc = cells[cells["kind"] == "wbc"]
    # crops cut from fields differ from the single-cell training images: the guard may hold some back
    assert set(wbc["status"]) <= {"classified", "out_of_distribution"}
    classified = wbc[wbc["status"] == "classified"]
    assert len(classified) >= 3 and classified["class"].notna().all() and (classified["confidence"] > 0).all()
    assert wbc.loc[wbc["status"] != "classified", "class"].isna().all()
    assert (cells.loc[cells["kind"] != "wbc", "status"].fillna("") == "").all()  # not classified at all
    docs = json.loads((out / "samples.json").read_text())
    assert set(docs) == {"A", "B"} and docs["A"]["n_fields"] == 2
    for doc in docs.values():
        assert doc["n_cells"] == doc["n_identified"] + doc["n_unidentified"] + sum(doc["n_non_wbc"].values())
        pct = [v for v in doc["percent"].values() if v == v]
        assert not pct or abs(sum(pct) - 100) < 0.1
    html = (out / "report.html").read_text()
    assert "Sample A" in html and "95 % CI" in html
    assert res.samples == docs
    assert AnalyzeConfig.load(out / "analyze.yaml") == AnalyzeConfig(task="blood", min_cells=5)  # its settings
    assert folder_digest(setup["fields"]) == before  # inputs are only read


def test_analyze_skips_unreadable_fields_and_refuses_a_used_folder(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    first = next(setup["fields"].rglob("*.png"))
    (bad / "good.png").write_bytes(first.read_bytes())
    res = analyze(setup["bundle"], [bad], tmp_path / "out", um_per_px=0.34, min_cells=5, progress=False)
    assert len(res.skipped) == 1 and res.skipped[0].path.endswith("broken.png")
    assert "broken.png" in (tmp_path / "out" / "skipped.csv").read_text()
    with pytest.raises(RunError, match="not empty"):
        analyze(setup["bundle"], [bad], tmp_path / "out", progress=False)


def test_cli_analyze_per_field_samples(setup: dict[str, Path], tmp_path: Path) -> None:
    r = runner.invoke(
        app,
        [
            "analyze",
            str(setup["bundle"]),
            str(setup["fields"]),
            "--out",
            str(tmp_path / "cli"),
            "--samples",
            "per-field",
            "--um-per-px",
            "0.34",
            "--min-cells",
            "3",
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    assert len(json.loads((tmp_path / "cli" / "samples.json").read_text())) == 5
    r = runner.invoke(
        app,
        [
            "analyze",
            str(setup["bundle"]),
            str(setup["fields"]),
            "-o",
            str(tmp_path / "x"),
            "--ignore-region",
            "1,2,3",
        ],
    )
    assert r.exit_code != 0 and "four integers" in r.output


def test_fields_csv_with_a_bad_scale_names_the_file(tmp_path: Path) -> None:
    from lablens.workflows.analyze import read_fields

    (tmp_path / "f.png").write_bytes(b"x")
    csv = tmp_path / "fields.csv"
    csv.write_text("path,um_per_px\nf.png,abc\n")
    with pytest.raises(RunError, match=r"fields\.csv, f\.png: um_per_px 'abc' is not a number"):
        read_fields([csv], "together", None)
    csv.write_text("path,um_per_px\nf.png,\nmissing.png,0.1\n")
    items, problems = read_fields([csv], "together", None)
    assert items[0].um_per_px is None and problems[0].kind == "missing_file"


def test_fields_csv_identifiers_stay_text(tmp_path: Path) -> None:
    from lablens.workflows.analyze import read_fields

    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"x")
    csv = tmp_path / "fields.csv"
    csv.write_text("path,sample,um_per_px\na.png,007,0.1\nb.png,01,\nc.png,NA,1e-1\n")
    items, _ = read_fields([csv], "together", None)
    assert [i.sample for i in items] == ["007", "01", "NA"]
    assert [i.um_per_px for i in items] == [0.1, None, 0.1]


def test_analyze_on_ray_gives_the_local_results(setup: dict[str, Path], tmp_path: Path) -> None:
    require_ray()

    bad = tmp_path / "fields.csv"
    rows = pd.read_csv(setup["csv"])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows["path"] = [str(setup["root"] / p) for p in rows["path"]]
    pd.concat(
        [rows, pd.DataFrame([{"path": str(tmp_path / "broken.png"), "sample": "B", "um_per_px": 0.3}])]
    ).to_csv(bad, index=False)
    local = analyze(setup["bundle"], [bad], tmp_path / "local", min_cells=5, progress=False)
    ray = analyze(
        setup["bundle"],
        [bad],
        tmp_path / "ray",
        min_cells=5,
        engine="ray",
        ray={"num_cpus": 2},
        progress=False,
    )
    pd.testing.assert_frame_equal(ray.cells, local.cells)
    assert ray.samples == local.samples and [s.path for s in ray.skipped] == [s.path for s in local.skipped]
    assert len(ray.skipped) == 1 and ray.skipped[0].kind == "not_image"
    for name in ("fields.csv", "cells.csv"):
        assert (tmp_path / "ray" / name).read_text() == (tmp_path / "local" / name).read_text()
    local_png = sorted(p.name for p in (tmp_path / "local" / "overlays").iterdir())
    assert (
        local_png == sorted(p.name for p in (tmp_path / "ray" / "overlays").iterdir()) and len(local_png) == 5
    )


def test_quality_gate_flags_blurred_fields_as_not_evaluable(setup: dict[str, Path], tmp_path: Path) -> None:
    import cv2

    from lablens.workflows.degrade import degrade

    root = setup["root"]
    if not (root / "qrun").exists():
        degrade(root / "cells", root / "deg", levels="0-4", kinds="defocus,gaussian", progress=False)
        cfg = RunConfig()
        cfg.model.name, cfg.model.image_size = "blur_level", 48
        cfg.data.label_column = "blur_level"
        cfg.train.threads, cfg.eval.bootstrap = 1, 0
        train(root / "deg", root / "qrun", cfg, progress=False)
    fields = sorted(setup["fields"].rglob("*.png"))[:4]
    rows = []
    for i, f in enumerate(fields):
        img = cv2.imread(str(f))
        blurred = i >= 2  # two sharp fields, two defocused ones (σ 6 px at 320 px)
        out_img = cv2.GaussianBlur(img, (0, 0), 6) if blurred else img
        path = tmp_path / f"field{i}.png"
        cv2.imwrite(str(path), out_img)
        rows.append({"path": path.name, "sample": "S", "um_per_px": 0.34})
    pd.DataFrame(rows).to_csv(tmp_path / "fields.csv", index=False)
    res = analyze(
        setup["bundle"],
        [tmp_path / "fields.csv"],
        tmp_path / "out",
        quality=root / "qrun" / "bundle",
        min_cells=1,
        progress=False,
    )
    fields_df = pd.read_csv(tmp_path / "out" / "fields.csv")
    assert fields_df["evaluable"].tolist() == [True, True, False, False], fields_df[
        ["field", "quality_score"]
    ]
    cells = res.cells
    blurred_cells = cells[cells["field"].str.contains("field[23]") & (cells["kind"] == "wbc")]
    assert len(blurred_cells) and (blurred_cells["status"] == "not_evaluable").all()
    assert blurred_cells["class"].isna().all() or (blurred_cells["class"] == "").all()
    doc = res.samples["S"]
    assert doc["n_fields_not_evaluable"] == 2 and doc["n_not_evaluable"] == len(blurred_cells)
    assert any("2 of 4 field(s) not evaluable" in f for f in doc["flags"])
    assert "not evaluable" in (tmp_path / "out" / "report.html").read_text()
    settings = json.loads((tmp_path / "out" / "analyze.json").read_text())
    assert settings["quality_gate"]["max_level"] == 2.5
