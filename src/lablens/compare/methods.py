"""Method names of a comparison and the estimators they stand for.

Grammar (several methods are joined by commas outside brackets)::

    hu+haralick+lbp:lightgbm          features (see lablens.features) + a classifier (lablens.models.classifiers)
    deep[efficientnet_lite0]:svm_rbf  CNN features + SVM (Acevedo 2019)
    finetune[resnet18]                a timm network trained end to end, with the run's training settings;
    finetune[densenet121, weights=imagenet, epochs=10, image_size=96]   … and per-method overrides
    handcrafted, cnn_features, resnet18 …   any registered estimator name

Every method becomes a factory of fresh, unfitted estimators with explicit arguments, so each fold starts
from scratch.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lablens.config import RunConfig
from lablens.features.registry import parse_term, split_top
from lablens.models.classical import FeatureClassifier
from lablens.models.classifiers import classifier_spec
from lablens.registry import get_factory
from lablens.workflows.train import estimator_kwargs

FINETUNE_OPTIONS = {"weights", "epochs", "image_size", "lr", "batch_size", "drop_rate", "tta", "patience"}


@dataclass(frozen=True)
class Method:
    """One method of a comparison."""

    name: str  # as the user wrote it (normalised spacing)
    estimator: str  # registry name used to build it and to save its bundle
    kwargs: dict[str, Any] = field(default_factory=dict)
    family: str = "deep"  # "deep" or "features"

    def build(self) -> Any:
        return get_factory(self.estimator)(**self.kwargs)

    @property
    def slug(self) -> str:
        """A file-name-safe version of the name."""
        return re.sub(r"[^A-Za-z0-9_.+-]+", "_", self.name).strip("_")[:80]


def split_methods(text: str | list[str]) -> list[str]:
    """Method names from a comma-separated string (brackets respected) or a list of such strings."""
    items = text if isinstance(text, list) else [text]
    out = [m for item in items for m in split_top(item, ",")]
    if not out:
        raise ValueError("no methods given")
    return out


def _feature_kwargs(cfg: RunConfig) -> dict[str, Any]:
    return {
        "image_size": cfg.model.image_size,
        "resize_mode": cfg.data.resize_mode,
        "search": cfg.compare.search,
        "search_folds": cfg.compare.search_folds,
        "seed": cfg.train.seed,
        "threads": cfg.train.threads,
    }


def _is_feature_family(factory: Callable[..., Any]) -> bool:
    target = factory.func if isinstance(factory, functools.partial) else factory
    return isinstance(target, type) and issubclass(target, FeatureClassifier)


def parse_method(text: str, cfg: RunConfig) -> Method:
    """The :class:`Method` a name stands for, with arguments from the run config ``cfg``."""
    text = " ".join(text.split())
    parts = split_top(text, ":")
    if len(parts) == 2:
        features, classifier = parts
        classifier_spec(classifier)  # unknown classifier: KeyError naming the choices
        from lablens.features.registry import create_extractors

        create_extractors(features)  # unknown extractor or bad option: fail before any training
        kwargs = {**_feature_kwargs(cfg), "features": features, "classifier": classifier}
        return Method(text, "features", kwargs, "features")
    if len(parts) != 1:
        raise ValueError(
            f"cannot read method {text!r}: use FEATURES:CLASSIFIER, finetune[MODEL] or a model name"
        )
    name, options = parse_term(text)
    if name == "finetune":
        model = options.pop("<positional>", None)
        if not model:
            raise ValueError(f"{text!r}: name the network, e.g. finetune[resnet18]")
        unknown = set(options) - FINETUNE_OPTIONS
        if unknown:
            raise ValueError(
                f"{text!r}: unknown option(s) {sorted(unknown)}; allowed: {sorted(FINETUNE_OPTIONS)}"
            )
        get_factory(str(model))  # unknown network: KeyError with suggestions
        kwargs = {**estimator_kwargs(cfg), **options, "model_name": str(model)}
        return Method(text, "deep", kwargs, "deep")
    if options:
        raise ValueError(f"{text!r}: options in brackets are for finetune[...] and feature extractors")
    factory = get_factory(name)
    if _is_feature_family(factory):
        return Method(text, name, _feature_kwargs(cfg), "features")
    return Method(text, name, estimator_kwargs(cfg), "deep")
