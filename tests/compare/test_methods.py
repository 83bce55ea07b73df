"""Method names → estimators with explicit arguments from the run config."""

from __future__ import annotations

import pytest

from lablens.compare.methods import parse_method, split_methods
from lablens.config import RunConfig, apply_overrides


def _cfg() -> RunConfig:
    return apply_overrides(RunConfig(), {"model.image_size": 96, "train.epochs": 3, "compare.search": True})


def test_feature_method_takes_size_search_and_seed_from_config() -> None:
    m = parse_method("hu+haralick+lbp:lightgbm", _cfg())
    est = m.build()
    assert m.estimator == "features" and "epochs" not in m.kwargs
    assert (est.features, est.classifier, est.image_size, est.search) == (
        "hu+haralick+lbp",
        "lightgbm",
        96,
        True,
    )


def test_finetune_method_with_overrides() -> None:
    m = parse_method("finetune[resnet18, epochs=7, weights=scratch]", _cfg())
    est = m.build()
    assert (est.model_name, est.epochs, est.weights, est.image_size) == ("resnet18", 7, "scratch", 96)
    assert m.slug == "finetune_resnet18_epochs_7_weights_scratch"


def test_registered_names_build_their_family() -> None:
    assert parse_method("cnn_features", _cfg()).build().features == "deep[efficientnet_lite0]"
    assert parse_method("resnet34", _cfg()).build().epochs == 3
    multitask = parse_method("multitask[deblur_weight=0, levels=0-2]", _cfg()).build()
    assert (multitask.deblur_weight, multitask.levels, multitask.epochs, multitask.tta) == (0, "0-2", 3, True)


def test_method_lists_split_outside_brackets() -> None:
    names = split_methods("hu:rf, deep[resnet18, stages=3+4]:svm_rbf,finetune[vgg16, epochs=2]")
    assert names == ["hu:rf", "deep[resnet18, stages=3+4]:svm_rbf", "finetune[vgg16, epochs=2]"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("hu:catboost", "unknown classifier"),
        ("hux:rf", "unknown feature extractor"),
        ("finetune[resnet18, colour=1]", "unknown option"),
        ("finetune[handcrafted]", "takes a timm network"),
        ("multitask[levels=0-99]", "levels"),
        ("hu[degree=3]:rf", "feature extractor 'hu': no setting 'degree'"),
        ("finetune[]", "name the network"),
        ("resnet9000", "unknown model"),
        ("a:b:c", "cannot read method"),
    ],
)
def test_bad_methods_are_explained(text: str, match: str) -> None:
    with pytest.raises((KeyError, ValueError), match=match):
        parse_method(text, _cfg())
