"""From the run configuration to a family's parameters: what applies goes through, what does not is an error."""

from __future__ import annotations

import pytest

from lablens.config import RunConfig, apply_overrides
from lablens.models.from_config import changed_settings, estimator_params, unused_by_all
from lablens.models.registry import get_spec
from lablens.params import ParamError


def _cfg(model: str, **overrides: object) -> RunConfig:
    return apply_overrides(RunConfig(), {"model.name": model, **overrides})


def test_a_deep_model_takes_every_training_and_network_setting() -> None:
    params = estimator_params(
        _cfg("resnet18", **{"train.epochs": 3, "model.tta": False, "train.compile": True})
    )
    assert (params["epochs"], params["tta"], params["compile"]) == (3, False, True)
    assert "model_name" not in params  # fixed by the name
    assert not {"device", "threads", "nproc"} & set(params)  # runtime: FitContext


def test_the_multitask_family_takes_resume_ema_tta_and_monitor_like_any_deep_model() -> None:
    cfg = _cfg("multitask", **{"train.ema": False, "model.tta": False, "train.monitor": "loss"})
    cfg.model.params = {"deblur_weight": 0.0, "model_name": "test_efficientnet"}
    params = estimator_params(cfg)
    assert (params["ema"], params["tta"], params["monitor"], params["deblur_weight"]) == (
        False,
        False,
        "loss",
        0.0,
    )
    assert get_spec("multitask").capabilities.resumable


def test_a_changed_setting_the_family_does_not_take_is_an_error_naming_it() -> None:
    with pytest.raises(ParamError, match=r"train.epochs = 5: not a setting of model 'handcrafted'"):
        estimator_params(_cfg("handcrafted", **{"train.epochs": 5}))
    with pytest.raises(ParamError, match=r"model.weights = 'imagenet'.*'blur_level'"):
        estimator_params(_cfg("blur_level", **{"model.weights": "imagenet"}))
    with pytest.raises(ParamError, match=r"compare.search = True: not a setting of model 'resnet18'"):
        estimator_params(_cfg("resnet18", **{"compare.search": True}))
    # defaults of settings a family does not take are not "given": no error
    assert "epochs" not in estimator_params(_cfg("handcrafted"))


def test_model_params_are_checked_against_the_family() -> None:
    cfg = _cfg("handcrafted")
    cfg.model.params = {"classifier": "lightgbm"}
    with pytest.raises(ParamError, match=r"model\.params\.classifier: not a setting of model 'handcrafted'"):
        estimator_params(cfg)
    cfg = _cfg("features")
    cfg.model.params = {"classifier": "catboost"}
    with pytest.raises(ParamError, match="unknown classifier 'catboost'"):
        estimator_params(cfg)


def test_changed_settings_and_settings_no_family_takes() -> None:
    cfg = _cfg("resnet18", **{"train.epochs": 3, "compare.search": True, "model.image_size": 64})
    assert changed_settings(cfg) == {"model.image_size": 64, "compare.search": True, "train.epochs": 3}
    assert unused_by_all(cfg, [get_spec("resnet18")]) == ["compare.search"]
    assert unused_by_all(cfg, [get_spec("resnet18"), get_spec("handcrafted")]) == []
