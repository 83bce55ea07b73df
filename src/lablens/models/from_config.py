"""From the run configuration to a model family's parameters, refusing loudly what does not apply.

The configuration holds settings for every family (``train.epochs``, ``model.weights``, ``compare.search`` …);
:data:`CONFIG_KEYS` says which estimator parameter each one sets. A family takes the ones it declares. A setting
given a non-default value that the family does not take is an error naming it (``lablens train``); in a
comparison of several methods it must apply to at least one of them (:func:`unused_by_all`). ``model.params``
passes family-specific parameters, each checked against the family's declaration.
"""

from __future__ import annotations

from typing import Any

from lablens.config import RunConfig, TrainingSettings
from lablens.models.registry import EstimatorSpec, check_params, get_spec
from lablens.params import ParamError

#: estimator parameter → the config key that sets it
CONFIG_KEYS: dict[str, str] = {
    "weights": "model.weights",
    "init": "model.init",
    "image_size": "model.image_size",
    "drop_rate": "model.drop_rate",
    "tta": "model.tta",
    "tta_margin": "model.tta_margin",
    "resize_mode": "data.resize_mode",
    "search": "compare.search",
    "search_folds": "compare.search_folds",
    **{name: f"train.{name}" for name in TrainingSettings.model_fields},
}


def config_value(cfg: RunConfig, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def changed_settings(cfg: RunConfig) -> dict[str, Any]:
    """Config keys of :data:`CONFIG_KEYS` whose value differs from the default, with their values."""
    default = RunConfig()
    return {
        key: config_value(cfg, key)
        for key in CONFIG_KEYS.values()
        if config_value(cfg, key) != config_value(default, key)
    }


def taken_settings(cfg: RunConfig, spec: EstimatorSpec) -> tuple[dict[str, Any], list[str]]:
    """The parameters ``spec`` takes from ``cfg``, and the changed settings it does not take (config keys)."""
    params = {p: config_value(cfg, key) for p, key in CONFIG_KEYS.items() if spec.accepts(p)}
    taken_keys = {CONFIG_KEYS[p] for p in params}
    return params, [key for key in changed_settings(cfg) if key not in taken_keys]


def estimator_params(cfg: RunConfig, name: str | None = None) -> dict[str, Any]:
    """Every parameter of model ``name`` (default ``cfg.model.name``) that ``cfg`` sets, checked.

    Raises :class:`~lablens.params.ParamError` naming a changed setting the model does not take, a
    ``model.params`` entry it does not have, or a value it cannot use.
    """
    spec = get_spec(name or cfg.model.name)
    params, unused = taken_settings(cfg, spec)
    if unused:
        shown = ", ".join(f"{key} = {config_value(cfg, key)!r}" for key in unused)
        raise ParamError(f"{shown}: not a setting of {spec.describe()}; leave it out or choose another model")
    for key, value in cfg.model.params.items():
        if not spec.accepts(key):
            raise ParamError(
                f"model.params.{key}: not a setting of {spec.describe()}; it takes "
                f"{', '.join(sorted(k for k in spec.params.model_fields if spec.accepts(k)))}"
            )
        params[key] = value
    check_params(spec, params)
    return params


def unused_by_all(cfg: RunConfig, specs: list[EstimatorSpec]) -> list[str]:
    """Changed settings that none of ``specs`` takes (a comparison applies each where it fits)."""
    unused = [set(taken_settings(cfg, spec)[1]) for spec in specs]
    return sorted(set.intersection(*unused)) if unused else []
