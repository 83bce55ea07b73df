"""Every verb's typed config: the command line declares each setting once (its default is the config's), a YAML
file gives them, options given override the file, and a written config loads back unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from lablens import cli
from lablens.errors import ConfigError, SettingError
from lablens.service.serve_config import ServeConfig
from lablens.verb_config import VerbConfig, nested
from lablens.workflows.analyze_config import AnalyzeConfig
from lablens.workflows.crop_cells import CropCellsConfig
from lablens.workflows.degrade import DegradeConfig
from lablens.workflows.export import ExportConfig
from lablens.workflows.fields_csv import FieldsCsvConfig
from lablens.workflows.fit_verifier import FitVerifierConfig
from lablens.workflows.phantom import PhantomConfig
from lablens.workflows.predict_verb import PredictConfig
from lablens.workflows.quality import QualityConfig
from lablens.workflows.retrain import RetrainConfig
from lablens.workflows.train_detector import TrainDetectorConfig

#: command → its config and the options whose setting has another name
VERBS: dict[str, tuple[type[VerbConfig], dict[str, str]]] = {
    "analyze": (AnalyzeConfig, cli.ANALYZE_OPTIONS),
    "predict": (PredictConfig, cli.PREDICT_OPTIONS),
    "serve": (ServeConfig, cli.SERVE_OPTIONS),
    "degrade": (DegradeConfig, cli.DEGRADE_OPTIONS),
    "quality": (QualityConfig, {}),
    "fields-csv": (FieldsCsvConfig, {}),
    "train-detector": (TrainDetectorConfig, cli.TRAIN_DETECTOR_OPTIONS),
    "crop-cells": (CropCellsConfig, {}),
    "fit-verifier": (FitVerifierConfig, cli.FIT_VERIFIER_OPTIONS),
    "retrain": (RetrainConfig, {}),
    "phantom": (PhantomConfig, {}),
    "export": (ExportConfig, {}),
}
#: what a command takes that is not a setting: inputs, outputs, the config file itself, the display
NOT_SETTINGS = {
    "ctx",
    "annotations",
    "truth",
    "reviews",
    "paths",
    "fields",
    "out",
    "config",
    "quiet",
    "overwrite",
}


def _command(name: str) -> typer.main.click.Command:  # type: ignore[name-defined]
    return typer.main.get_command(cli.app).commands[name]  # type: ignore[attr-defined]


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_option_is_a_setting_with_the_configs_default(verb: str) -> None:
    cls, keys = VERBS[verb]
    inputs = {p.name for p in _command(verb).params if p.param_type_name == "argument"}
    checked = 0
    for param in _command(verb).params:
        if param.name in NOT_SETTINGS | inputs:
            continue
        key = keys.get(param.name, param.name)
        assert key.split(".")[0] in cls.model_fields, (
            f"lablens {verb} --{param.name} sets no {cls.__name__} field"
        )
        from_cli = cls.model_validate(nested({key: param.default})) if param.default is not None else cls()
        node_cli, node_default = from_cli, cls()
        for part in key.split("."):
            node_cli, node_default = getattr(node_cli, part), getattr(node_default, part)
        assert node_cli == node_default, (
            f"lablens {verb} --{param.name}: default {param.default!r} ≠ {node_default!r}"
        )
        checked += 1
    assert checked >= 2


def test_a_config_file_is_read_and_options_given_override_it(tmp_path: Path) -> None:
    path = tmp_path / "predict.yaml"
    path.write_text("top_k: 5\ntta: full\nood_alpha: off\nray:\n  actors: 2\n", encoding="utf-8")
    cfg = PredictConfig.load(path, {"top_k": 2})
    assert (cfg.top_k, cfg.tta, cfg.ood_alpha, cfg.ray.actors) == (2, "full", None, 2)
    assert PredictConfig.load(cfg.write(tmp_path / "again.yaml")) == cfg


def test_unknown_or_bad_settings_name_the_file_and_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "analyze.yaml"
    path.write_text("task: blood\nmin_cels: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"analyze.yaml: unknown setting 'min_cels'"):
        AnalyzeConfig.load(path)
    path.write_text("ignore_regions: ['1,2,3']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="four integers"):
        AnalyzeConfig.load(path)
    with pytest.raises(ValidationError, match="ood_alpha"):
        PredictConfig(ood_alpha=0.3)
    with pytest.raises(ConfigError, match="tta"):
        PredictConfig.load(None, {"tta": "sometimes"})
    with pytest.raises(SettingError, match="not both"):
        AnalyzeConfig.resolve(AnalyzeConfig(), {"task": "ana"})


def test_the_cli_reads_the_file_and_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "analyze.yaml"
    bad.write_text("engine: spark\n", encoding="utf-8")
    fields = tmp_path / "f.png"
    fields.write_bytes(b"")
    r = CliRunner().invoke(
        cli.app, ["analyze", str(tmp_path / "b"), str(fields), "--out", str(tmp_path / "o"), "-c", str(bad)]
    )
    assert (
        r.exit_code == 1
        and r.output.startswith("error:")
        and "engine" in r.output
        and "spark" not in r.output[:6]
    )
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_serve_settings_become_the_services_own(tmp_path: Path) -> None:
    cfg = ServeConfig.load(None, {"home": str(tmp_path / "home"), "max_upload_mb": 1, "one_person_lab": True})
    settings = cfg.service_settings(cfg.where())
    assert settings.max_upload_bytes == 1024 * 1024 and settings.four_eyes is False
    assert settings.db_url.startswith("sqlite:///") and str(tmp_path / "home") in settings.storage
    assert yaml.safe_load(cfg.write(tmp_path / "serve.yaml").read_text())["max_upload_mb"] == 1


def test_fit_verifier_settings_read_labels_comma_separated_and_never_overwrite(tmp_path: Path) -> None:
    from lablens.errors import RunError
    from lablens.workflows.fit_verifier import fit_verifier

    cfg = FitVerifierConfig.load(None, {"non_wbc": "rbc, platelet", "holdout": 0.3})
    assert cfg.non_wbc == ("rbc", "platelet")
    assert FitVerifierConfig.load(cfg.write(tmp_path / "a.yaml")) == cfg
    (tmp_path / "v.json.yaml").write_text("seed: 1\n", encoding="utf-8")
    with pytest.raises(RunError, match=r"v\.json\.yaml exists"):
        fit_verifier([tmp_path], tmp_path, tmp_path / "v.json", progress=False)
    assert not (tmp_path / "v.json").exists()
