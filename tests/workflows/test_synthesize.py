"""``lablens synthesize``: a generator trained on the training partition only writes a synthetic set that
``lablens train --synthetic`` takes; generators round-trip as bundles; the same seed gives the same images."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from lablens.cli import app

from conftest import write_shape_folder

runner = CliRunner()
FAST = ["--image-size", "32", "--epochs", "2", "--n", "6", "-q"]


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synth")
    data = write_shape_folder(root / "real", per_class=20, size=32)
    cfg = root / "c.yaml"
    cfg.write_text("split:\n  protocol: '6:2:2'\n")
    r = runner.invoke(
        app, ["synthesize", str(data), "--classes", "ring", "--out", str(root / "syn"), "-c", str(cfg), *FAST]
    )
    assert r.exit_code == 0, r.output
    return data, root / "syn"


def _pixels(folder: Path) -> list[np.ndarray]:
    table = pd.read_csv(folder / "manifest.csv")
    return [np.asarray(Image.open(folder / p)) for p in table["path"]]


def test_the_set_records_its_generator_and_sources(synthesized: tuple[Path, Path]) -> None:
    data, syn = synthesized
    table = pd.read_csv(syn / "manifest.csv", dtype=str)
    assert len(table) == 6 and set(table["label"]) == {"ring"} and set(table["synthetic"]) == {"1"}
    card = json.loads((syn / "generator" / "card.json").read_text())
    assert card["generator"]["name"] == "gan" and card["generator"]["classes"] == ["disc", "ring", "square"]
    assert set(table["generator"]) == {
        hashlib.sha256((syn / "generator" / "card.json").read_bytes()).hexdigest()[:16]
    }
    sources = set(pd.read_csv(syn / "sources.csv")["sha256"])
    every = {hashlib.sha256(p.read_bytes()).hexdigest() for p in data.rglob("*.png")}
    assert sources < every and len(sources) == 36  # the training partition of the 6:2:2 split (of 60)
    assert not (syn / "checkpoints").exists()


def test_a_saved_generator_gives_the_same_images_again(
    synthesized: tuple[Path, Path], tmp_path: Path
) -> None:
    data, syn = synthesized
    r = runner.invoke(
        app,
        ["synthesize", str(data), "--classes", "ring", "--generator", str(syn / "generator"), "--out",
         str(tmp_path / "again"), *FAST],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    for a, b in zip(_pixels(syn), _pixels(tmp_path / "again"), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "again" / "sources.csv").read_text() == (syn / "sources.csv").read_text()


def test_the_set_comes_with_a_quality_report(synthesized: tuple[Path, Path]) -> None:
    _, syn = synthesized
    quality = json.loads((syn / "quality.json").read_text())
    assert quality["method"] == "gan" and quality["features"] == ["imagenet"]
    ring = quality["classes"]["ring"]
    assert (ring["n_real"], ring["n_synthetic"]) == (12, 6)  # the 6:2:2 training partition's rings
    assert ring["memorisation"]["checked"] == 6
    html = (syn / "report.html").read_text()
    assert "Memorisation" in html and "Give --classifier RUN/bundle" in html


def test_the_report_can_use_the_labs_own_classifier(synthesized: tuple[Path, Path], tmp_path: Path) -> None:
    data, syn = synthesized
    r = runner.invoke(
        app,
        ["train", str(data), "--out", str(tmp_path / "run"), "--model", "test_resnet", "--weights", "scratch",
         "--image-size", "32", "--epochs", "1", "--split", "6:2:2", "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        ["synthesize", str(data), "--classes", "ring", "--generator", str(syn / "generator"), "--classifier",
         str(tmp_path / "run" / "bundle"), "--out", str(tmp_path / "again"), *FAST],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    quality = json.loads((tmp_path / "again" / "quality.json").read_text())
    (name,) = quality["features"]
    assert (
        name.startswith("classifier ")
        and "kid" in quality["classes"]["ring"]["features"][name]["synthetic_vs_real"]
    )
    assert "(trained on the lab" in (tmp_path / "again" / "report.html").read_text()


def test_a_diffusion_model_makes_a_set_too(tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "real", per_class=12, size=32)
    out = tmp_path / "syn"
    r = runner.invoke(
        app,
        [
            "synthesize",
            str(data),
            "--classes",
            "disc,ring",
            "--method",
            "diffusion",
            "--out",
            str(out),
            *FAST,
        ],
    )
    assert r.exit_code == 0, r.output
    card = json.loads((out / "generator" / "card.json").read_text())
    assert card["generator"]["name"] == "diffusion" and len(card["training"]["history"]) == 2
    assert pd.read_csv(out / "manifest.csv")["label"].value_counts().to_dict() == {"disc": 6, "ring": 6}
    assert json.loads((out / "quality.json").read_text())["method"] == "diffusion"


def test_its_images_join_training_and_the_leak_check_passes(
    synthesized: tuple[Path, Path], tmp_path: Path
) -> None:
    data, syn = synthesized
    r = runner.invoke(
        app,
        ["train", str(data), "--out", str(tmp_path / "run"), "--model", "handcrafted", "--image-size", "32",
         "--split", "6:2:2", "--synthetic", str(syn), "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["synthetic"]["used"] == {"ring": 6}
    other = runner.invoke(  # another split holds out images the generator learned from: refused
        app,
        ["train", str(data), "--out", str(tmp_path / "run2"), "--model", "handcrafted", "--image-size", "32",
         "--split", "6:2:2", "--seed", "5", "--synthetic", str(syn), "-q"],
    )  # fmt: skip
    assert other.exit_code != 0 and "learned from" in other.output


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ("blast", "'blast' is not a class"),
        ("ring", "has 8 training image(s)"),
        ("ring --method vae", "--method 'vae': choose diffusion | gan"),
        ("ring --classifier nowhere", "--classifier"),
    ],
)
def test_bad_requests_are_one_line(classes: str, message: str, tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "real", per_class=10, size=32)
    r = runner.invoke(
        app, ["synthesize", str(data), "--classes", *classes.split(), "--out", str(tmp_path / "syn"), *FAST]
    )
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "syn").exists()
