from __future__ import annotations

from pathlib import Path

import pytest

from lablens.config import RunConfig, apply_overrides, dump_config, load_config
from lablens.errors import ConfigError


def test_defaults_roundtrip(tmp_path: Path) -> None:
    cfg = RunConfig()
    dump_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_partial_yaml_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "model:\n  name: resnet34\ntrain:\n  epochs: 7\n  augment:\n    rot90: false\n"
    )
    cfg = load_config(tmp_path / "c.yaml")
    assert (cfg.model.name, cfg.train.epochs, cfg.train.augment.rot90) == ("resnet34", 7, False)
    cfg2 = apply_overrides(cfg, {"train.epochs": 3, "model.weights": None, "split.protocol": "9:1"})
    assert cfg2.train.epochs == 3 and cfg2.model.weights == "scratch" and cfg2.split.protocol == "9:1"
    assert cfg.train.epochs == 7  # the original is untouched


def test_unknown_and_invalid_values(tmp_path: Path) -> None:
    """Every configuration problem is one ConfigError naming the file or option and the setting."""
    (tmp_path / "bad.yaml").write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown setting 'train.epochz'"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match=r"train\.imbalance: "):
        apply_overrides(RunConfig(), {"train.imbalance": "magic"})
    with pytest.raises(ConfigError, match=r"unknown config key 'train.nope'"):
        apply_overrides(RunConfig(), {"train.nope": 1})
    with pytest.raises(ConfigError, match=r"unknown config key 'nope.x'"):
        apply_overrides(RunConfig(), {"nope.x": 1})
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.model.name
