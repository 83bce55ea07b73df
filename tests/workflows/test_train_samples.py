"""``lablens train FIELDS.csv --label-level sample`` end to end on phantom ANA fields with sample labels only."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lablens.cli import app
from lablens.infer.bundle import load_bundle
from lablens.phantoms import get_task
from lablens.phantoms.write import write_phantoms

runner = CliRunner()
SIZE = 256


@pytest.fixture(scope="module")
def fields_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mil")
    write_phantoms(get_task("ana-hep2"), root / "f", n=48, seed=3, fields=True, size=SIZE)
    man = pd.read_csv(root / "f" / "manifest.csv", dtype=str)
    man = man[man["label"].isin(["centromere", "homogeneous", "nucleolar"])].reset_index(drop=True)
    pd.DataFrame(
        {
            "path": "f/" + man["path"],
            "sample": [f"{i:03d}" for i in range(len(man))],  # leading zeros must survive
            "label": man["label"],
            "um_per_px": man["field_um"].astype(float) / SIZE,
        }
    ).to_csv(root / "fields.csv", index=False)
    return root / "fields.csv"


@pytest.fixture(scope="module")
def trained(fields_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp_path = tmp_path_factory.mktemp("mil-run")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model:\n  params: {model_name: test_resnet, cells_per_bag: 4, bags_per_sample: 2}\n"
        "train: {epochs: 2, augment: null, patience: null}\n"
        "eval: {bootstrap: 50}\n"
    )
    out = tmp_path / "run"
    r = runner.invoke(
        app,
        ["train", str(fields_csv), "--out", str(out), "--label-level", "sample", "--task", "ana",
         "--image-size", "32", "--split", "2:1:1", "--config", str(cfg), "--device", "cpu", "-q"],
    )  # fmt: skip
    return out, r.output


@pytest.mark.slow
def test_sample_level_training_writes_sample_metrics_attention_and_a_bundle(
    trained: tuple[Path, str],
) -> None:
    out, output = trained
    assert "test (n=" in output and "bundle:" in output, output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["unit"] == "sample" and metrics["classes"] == ["centromere", "homogeneous", "nucleolar"]
    samples = pd.read_csv(out / "samples.csv", dtype=str)
    assert samples["sample"].tolist() == [f"{i:03d}" for i in range(18)]
    assert (samples["n_cells"].astype(int) > 5).all()
    predictions = pd.read_csv(out / "predictions.csv", dtype={"sample": str})
    assert len(predictions) == metrics["n"] >= 3 and predictions["sample"].str.len().eq(3).all()
    cells = pd.read_csv(out / "cells.csv", dtype={"sample": str})
    per_sample = cells.groupby("sample")["attention"].sum()
    assert len(per_sample) == metrics["n"] and ((per_sample - 1).abs() < 1e-3).all()
    bundle = load_bundle(out / "bundle")
    assert bundle.inputs == "bags" and bundle.crop["side_um"] == 24.0 and bundle.crop["object"] == "nucleus"


def test_image_models_and_sample_level_do_not_mix(fields_csv: Path, tmp_path: Path) -> None:
    r = runner.invoke(
        app,
        [
            "train",
            str(fields_csv),
            "--out",
            str(tmp_path / "a"),
            "--label-level",
            "sample",
            "--model",
            "resnet18",
        ],
    )
    assert r.exit_code == 1 and "use model mil or mil-mean" in r.output
    r = runner.invoke(app, ["train", str(fields_csv), "--out", str(tmp_path / "b"), "--model", "mil"])
    assert r.exit_code == 1 and "--label-level sample" in r.output
    r = runner.invoke(app, ["train", str(fields_csv), "--out", str(tmp_path / "c"), "--task", "ana"])
    assert r.exit_code == 1 and "apply to --label-level sample" in r.output
    r = runner.invoke(
        app,
        [
            "train",
            str(fields_csv),
            "--out",
            str(tmp_path / "d"),
            "--label-level",
            "sample",
            "--ignore-region",
            "1,2",
        ],
    )
    assert r.exit_code == 1 and "--ignore-region '1,2': expected four integers" in r.output
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_analyze_calls_each_sample_from_all_its_cells_with_a_bag_bundle(
    fields_csv: Path, trained: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = trained
    r = runner.invoke(
        app,
        ["analyze", str(out / "bundle"), str(fields_csv), "--out", str(tmp_path / "a"), "--task", "ana",
         "--device", "cpu", "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    docs = json.loads((tmp_path / "a" / "samples.json").read_text())
    assert set(docs) == {f"{i:03d}" for i in range(18)}
    doc = docs["000"]
    assert doc["dominant_pattern"] in ("centromere", "homogeneous", "nucleolar")
    assert abs(sum(doc["sample_probability"].values()) - 1) < 1e-3 and 0 < len(doc["top_cells"]) <= 8
    cells = pd.read_csv(tmp_path / "a" / "cells.csv", dtype={"sample": str})
    sums = cells.groupby("sample")["attention"].sum()
    assert ((sums - 1).abs() < 1e-3).all()
    assert "drove the call" in (tmp_path / "a" / "report.html").read_text()


@pytest.mark.slow
def test_analyze_refuses_or_warns_when_crops_differ_from_training(
    fields_csv: Path, trained: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = trained
    base = ["analyze", str(out / "bundle"), str(fields_csv), "--task", "ana", "--device", "cpu", "-q"]
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "a"), "--crop-um", "36"])
    assert r.exit_code == 1 and "crop sizes differ by 50%" in r.output and "24 µm" in r.output
    assert "36 µm" in r.output and not (tmp_path / "a").exists()
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--crop-um", "27"])
    assert r.exit_code == 0 and "crop sizes differ by 12%" in r.output
    settings = json.loads((tmp_path / "b" / "analyze.json").read_text())
    assert settings["warnings"] and settings["crop_um"] == 27


@pytest.mark.slow
def test_controls_grade_each_sample_and_dim_calls_are_flagged(
    fields_csv: Path, trained: tuple[Path, str], tmp_path: Path
) -> None:
    import numpy as np
    from PIL import Image

    from lablens.phantoms import ana_hep2 as ana

    style = ana.sample_style(np.random.default_rng(1))
    rows = []
    for k, (label, titer_log2) in enumerate([("negative", 0.0), ("negative", 0.0), ("homogeneous", 0.0)]):
        params = ana.sample_field(label, np.random.default_rng(k), {**style, "titer_log2": titer_log2})
        img, _ = ana.draw_field(params, SIZE)
        Image.fromarray(img).save(tmp_path / f"c{k}.png")
        rows.append({"path": f"c{k}.png", "control": "positive" if k == 2 else "negative",
                     "um_per_px": params["field_um"] / SIZE})  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "controls.csv", index=False)
    out, _ = trained
    r = runner.invoke(
        app,
        ["analyze", str(out / "bundle"), str(fields_csv), "--out", str(tmp_path / "a"), "--task", "ana",
         "--controls", str(tmp_path / "controls.csv"), "--device", "cpu", "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    docs = json.loads((tmp_path / "a" / "samples.json").read_text())
    grades = {d["intensity"]["grade"] for d in docs.values()}
    assert grades <= {"negative", "intermediate", "positive"} and "positive" in grades
    for d in docs.values():
        dim = d["intensity"]["grade"] != "positive" and d["result"] == "positive"
        assert dim == any("fluorescence intensity" in f for f in d["flags"])
    settings = json.loads((tmp_path / "a" / "analyze.json").read_text())
    assert settings["intensity_controls"]["n_negative"] == 2
    assert "Fluorescence intensity" in (tmp_path / "a" / "report.html").read_text()
