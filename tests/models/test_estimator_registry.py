"""The estimator registry: names, the timm fallback, capabilities, and parameters checked by name."""

from __future__ import annotations

import numpy as np
import pytest

from lablens.errors import UnknownNameError
from lablens.models.deep import DeepClassifier
from lablens.models.registry import Capabilities, create_estimator, get_spec, list_estimators, register
from lablens.params import ParamError


def test_registry_has_study_models() -> None:
    names = set(list_estimators())
    for required in (
        "resnet18",
        "resnet34",
        "vgg16",
        "inception_v3",
        "densenet121",
        "efficientnet_b0",
        "efficientnet_b7",
        "efficientnet_lite0",
        "features",
        "handcrafted",
        "cnn_features",
        "blur_level",
        "multitask",
        "deep",
    ):
        assert required in names


def test_any_timm_name_resolves_and_unknown_name_explains() -> None:
    spec = get_spec("test_efficientnet")
    assert spec.family is DeepClassifier and spec.fixed == {"model_name": "test_efficientnet"}
    assert create_estimator("test_efficientnet").model_name == "test_efficientnet"
    with pytest.raises(UnknownNameError, match=r"unknown model 'resnet9000'.*did you mean"):
        get_spec("resnet9000")


def test_capabilities_are_declared_per_family() -> None:
    assert get_spec("resnet18").capabilities == Capabilities(resumable=True, distributed=True, onnx=True)
    assert get_spec("multitask").capabilities.resumable and not get_spec("multitask").capabilities.onnx
    features = get_spec("handcrafted").capabilities
    assert features.uses_groups and features.folds_validation and not features.distributed


def test_parameters_are_checked_by_name_with_the_family_in_the_message() -> None:
    with pytest.raises(ParamError, match=r"model 'handcrafted' \(features .*\): no setting 'epochs'"):
        create_estimator("handcrafted", epochs=5)
    with pytest.raises(ParamError, match="setting 'epochs' = 0"):
        create_estimator("resnet18", epochs=0)
    with pytest.raises(ParamError, match=r"setting 'classifier' = 'catboost'.*unknown classifier"):
        create_estimator("features", classifier="catboost")
    with pytest.raises(ParamError, match="fixes model_name='resnet18'"):
        create_estimator("resnet18", model_name="vgg16")
    with pytest.raises(ParamError, match="levels"):
        create_estimator("multitask", levels="0-99")


def test_runtime_matters_are_not_parameters() -> None:
    for name in ("resnet18", "multitask", "handcrafted"):
        params = set(create_estimator(name).get_params())
        assert not params & {"device", "threads", "progress", "checkpoint_dir", "resume", "eval_batch_size"}


def test_a_name_is_registered_once_and_fixes_only_real_parameters() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("resnet18", fixed={"model_name": "vgg16"})(DeepClassifier)
    with pytest.raises(ValueError, match="does not have"):
        register("bogus", fixed={"colour": 1})(DeepClassifier)


def test_rejects_non_image_input() -> None:
    est = create_estimator("test_resnet", image_size=32, epochs=1)
    with pytest.raises(ValueError, match="uint8 image array"):
        est.fit(np.zeros((4, 32, 32)), np.array([0, 1, 0, 1]))
