"""Method names of a comparison and the estimators they stand for.

Grammar (several methods are joined by commas outside brackets)::

    hu+haralick+lbp:lightgbm          features (see lablens.features) + a classifier (lablens.models.classifiers)
    deep[efficientnet_lite0]:svm_rbf  CNN features + SVM (Acevedo 2019)
    finetune[resnet18]                a timm network trained end to end, with the run's training settings;
    finetune[densenet121, weights=imagenet, epochs=10, image_size=96]   … and per-method settings
    multitask[deblur_weight=0]        any registered name, with its own settings in brackets
    handcrafted, cnn_features, resnet18 …   any registered estimator name (or timm model name)

The run's settings (``train.epochs``, ``model.weights`` …) go to every method whose family takes them; settings in
brackets must be settings of that method's family. Every method becomes a factory of fresh, unfitted estimators
with explicit, checked parameters, so each fold starts from scratch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lablens.config import RunConfig
from lablens.errors import SettingError
from lablens.features.registry import parse_term, split_top
from lablens.models.from_config import taken_settings
from lablens.models.registry import EstimatorSpec, check_params, create_estimator, get_spec
from lablens.params import ParamError


@dataclass(frozen=True)
class Method:
    """One method of a comparison."""

    name: str  # as the user wrote it (normalised spacing)
    estimator: str  # registry name used to build it and to save its bundle
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Any:
        return create_estimator(self.estimator, **self.kwargs)

    @property
    def spec(self) -> EstimatorSpec:
        return get_spec(self.estimator)

    @property
    def slug(self) -> str:
        """A file-name-safe version of the name."""
        return re.sub(r"[^A-Za-z0-9_.+-]+", "_", self.name).strip("_")[:80]


def split_methods(text: str | list[str]) -> list[str]:
    """Method names from a comma-separated string (brackets respected) or a list of such strings."""
    items = text if isinstance(text, list) else [text]
    out = [m for item in items for m in split_top(item, ",")]
    if not out:
        raise SettingError("no methods given")
    return out


def _method(text: str, name: str, options: dict[str, Any], cfg: RunConfig) -> Method:
    """The method ``text``: estimator ``name`` with the run's settings it takes and its own ``options``."""
    spec = get_spec(name)
    if spec.capabilities.inputs != "images":
        raise ParamError(
            f"{text!r}: {spec.describe()} learns from a sample's cells, not from images; compare image models"
        )
    params, _ = taken_settings(cfg, spec)
    refused = [k for k in options if not spec.accepts(k)]
    if refused:
        allowed = sorted(k for k in spec.params.model_fields if spec.accepts(k))
        raise ParamError(f"{text!r}: unknown option(s) {refused} for {spec.describe()}; allowed: {allowed}")
    params.update(options)
    check_params(spec, params)
    return Method(text, name, params)


def parse_method(text: str, cfg: RunConfig) -> Method:
    """The :class:`Method` a name stands for, with arguments from the run config ``cfg``."""
    text = " ".join(text.split())
    parts = split_top(text, ":")
    if len(parts) == 2:
        features, classifier = parts
        return _method(text, "features", {"features": features, "classifier": classifier}, cfg)
    if len(parts) != 1:
        raise SettingError(
            f"cannot read method {text!r}: use FEATURES:CLASSIFIER, finetune[MODEL] or a model name"
        )
    name, options = parse_term(text)
    positional = options.pop("<positional>", None)
    if name == "finetune":
        if not positional:
            raise SettingError(f"{text!r}: name the network, e.g. finetune[resnet18]")
        if "model_name" not in get_spec(str(positional)).fixed:  # unknown name: KeyError with suggestions
            raise SettingError(f"{text!r}: finetune[...] takes a timm network name, not {positional!r}")
        return _method(text, "deep", {**options, "model_name": str(positional)}, cfg)
    if positional is not None:
        raise SettingError(f"{text!r}: options in brackets need a name (key=value), e.g. {name}[epochs=5]")
    return _method(text, name, options, cfg)
