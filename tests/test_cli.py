"""The command line: bad-file corpus (named, skipped, exit 0), empty data (one-line error, exit 1), verbs."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lablens.cli import app

from corpus import BAD_FILES, build_bad_corpus

runner = CliRunner()


def _out(result) -> str:
    text = result.output
    with contextlib.suppress(ValueError, AttributeError):
        text += result.stderr
    return " ".join(text.split())  # undo console wrapping


def test_validate_data_names_every_bad_file(tmp_path: Path) -> None:
    root = build_bad_corpus(tmp_path / "corpus")
    result = runner.invoke(app, ["validate-data", str(root), "--json", str(tmp_path / "report.json")])
    assert result.exit_code == 0, _out(result)
    text = _out(result)
    for rel in BAD_FILES:
        assert rel in text, rel
    for reason in (
        "truncated",
        "empty file",
        "not a recognised image",
        "unsupported file type",
        "too large",
        "too small",
        "duplicate of",
        "identical bytes",
        "not valid UTF-8",
        "at least 3 groups",
    ):
        assert reason in text, reason
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n_usable"] + report["n_skipped"] == report["n_found"]
    assert report["counts_by_kind"]["bad_name"] == 1


@pytest.mark.slow
def test_train_goes_on_without_bad_files(tmp_path: Path) -> None:
    root = build_bad_corpus(tmp_path / "corpus")
    result = runner.invoke(
        app,
        [
            "train",
            str(root),
            "--out",
            str(tmp_path / "run"),
            "--model",
            "test_resnet",
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--missing-classes",
            "drop",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, _out(result)
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["n_skipped"] >= len(BAD_FILES)
    assert (tmp_path / "run" / "bundle" / "card.json").exists()


def test_no_readable_image_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "a" / "x.png").write_bytes(b"")
    (tmp_path / "data" / "b").mkdir()
    (tmp_path / "data" / "b" / "y.jpg").write_text("text")
    for verb in ("validate-data", "train"):
        args = [verb, str(tmp_path / "data")] + (
            ["--out", str(tmp_path / f"run-{verb}")] if verb == "train" else []
        )
        result = subprocess.run(
            [sys.executable, "-m", "lablens.cli", *args], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 1
        lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and "no usable image" in lines[0], result.stderr
        assert "Traceback" not in result.stderr


def test_missing_data_path() -> None:
    result = runner.invoke(app, ["validate-data", "/nonexistent/folder"])
    assert result.exit_code == 1
    assert "no such file or folder" in _out(result)


def test_unknown_model_is_explained(tmp_path: Path) -> None:
    from conftest import write_shape_folder

    data = write_shape_folder(tmp_path / "d", per_class=6)
    result = runner.invoke(
        app, ["train", str(data), "--out", str(tmp_path / "r"), "--model", "resnet9000", "-q"]
    )
    assert result.exit_code == 1
    assert "unknown model 'resnet9000'" in _out(result)


def test_imagenet_offline_message(tmp_path: Path) -> None:
    from conftest import write_shape_folder

    data = write_shape_folder(tmp_path / "d", per_class=6)
    result = runner.invoke(
        app,
        [
            "train",
            str(data),
            "--out",
            str(tmp_path / "r"),
            "--model",
            "resnet18",
            "--weights",
            "imagenet",
            "--epochs",
            "1",
            "-q",
        ],
    )
    assert result.exit_code == 1
    text = _out(result)
    assert "could not get ImageNet weights" in text and "internet" in text


def test_bad_config_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochz: 3\n")
    result = runner.invoke(app, ["show-config", str(cfg)])
    assert result.exit_code == 1
    assert "epochz" in _out(result)


def test_models_lists_registry() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    assert "efficientnet_lite0" in result.output and "resnet34" in result.output


def test_predict_refuses_pickle_bundle(tmp_path: Path) -> None:
    import torch

    torch.save({"w": torch.zeros(1)}, tmp_path / "model.pt")
    img = tmp_path / "x.png"
    img.write_bytes(b"")
    result = runner.invoke(
        app, ["predict", str(tmp_path / "model.pt"), str(img), "--out", str(tmp_path / "p.csv")]
    )
    assert result.exit_code == 1
    assert "never unpickles" in _out(result)


def test_compare_cli_ranks_methods_and_explains_bad_presets(tmp_path: Path) -> None:
    from conftest import write_shape_folder

    data = write_shape_folder(tmp_path / "shapes", per_class=9)
    out = tmp_path / "cmp"
    args = [
        "compare",
        str(data),
        "-m",
        "hu+morphology:logreg,lbp[points=8, radii=1]:rf",
        "--folds",
        "3",
        "--image-size",
        "40",
    ]
    result = runner.invoke(app, [*args, "-o", str(out), "-q"])
    assert result.exit_code == 0, _out(result)
    text = _out(result)
    assert "ranking by macro_f1 (kfold:3)" in text
    assert "lbp[points=8, radii=1]:rf" in text  # brackets shown, not swallowed as Rich markup
    assert (out / "report.html").is_file() and (out / "comparison.json").is_file()
    bad = runner.invoke(app, ["compare", str(data), "--preset", "nope", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "unknown preset 'nope'; choose one of acevedo2019, sclerocap2025" in _out(bad)
    none = runner.invoke(app, ["compare", str(data), "-o", str(tmp_path / "y")])
    assert none.exit_code == 1 and "no methods" in _out(none)


def test_presets_load_as_valid_configs() -> None:
    from lablens.config import RunConfig
    from lablens.presets import load_preset, preset_names

    for name in preset_names():
        cfg = RunConfig.model_validate(load_preset(name))
        assert cfg.compare.methods and cfg.compare.holdout
    sclerocap = RunConfig.model_validate(load_preset("sclerocap2025")).compare
    assert len(sclerocap.methods) == 4 * 6 + 3 and sclerocap.holdout == "70:30"


def test_a_setting_that_does_not_apply_is_one_line_naming_it(tmp_path: Path) -> None:
    from conftest import write_shape_folder

    data = write_shape_folder(tmp_path / "d", per_class=6)
    train = ["train", str(data), "--out", str(tmp_path / "r"), "-q"]
    result = runner.invoke(app, [*train, "--model", "handcrafted", "--epochs", "5"])
    assert result.exit_code == 1
    line = _out(result)
    assert line.startswith("error: train.epochs = 5: not a setting of model 'handcrafted'"), line
    assert "Traceback" not in line and not (tmp_path / "r").exists()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  name: multitask\n  params:\n    deblur_wieght: 0\n")
    result = runner.invoke(app, [*train, "--config", str(cfg)])
    assert result.exit_code == 1 and "model.params.deblur_wieght: not a setting of model 'multitask'" in _out(
        result
    )
    result = runner.invoke(
        app, ["compare", str(data), "-m", "hu:rf", "--epochs", "3", "-o", str(tmp_path / "c"), "-q"]
    )
    assert result.exit_code == 1 and "train.epochs = 3: a setting of none of the methods (hu:rf)" in _out(
        result
    )
    result = runner.invoke(app, [*train, "--model", "handcrafted", "--nproc", "2", "--device", "cpu"])
    assert result.exit_code == 1 and "does not train across processes" in _out(result)
