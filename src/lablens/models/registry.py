"""Estimator registry: every trainable family registers by name with its typed parameters and capabilities.

As in timm's model registry, a name maps to an :class:`EstimatorSpec`: the family's class (which declares its
parameter model ``Params`` and its :class:`Capabilities`) and the parameters the name fixes — ``resnet18`` is
the ``deep`` family with ``model_name="resnet18"``, ``handcrafted`` the ``features`` family with all handcrafted
descriptors and a random forest. Any other timm model name resolves to the ``deep`` family too.

:func:`create_estimator` is the one factory used by configs, the CLI, comparisons and bundle loading. It checks
every parameter against the family's declaration and refuses, naming it, a setting the family does not take or a
value it cannot use: nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lablens.errors import ParamError
from lablens.registry import Entry, Registry, validate_params


@dataclass(frozen=True)
class Capabilities:
    """What a family can do, declared (never discovered by introspection).

    Attributes:
        uses_groups: ``fit`` uses the patients/groups of the training images (e.g. for grouped inner folds).
        folds_validation: the validation images join the training data (so calibration must look elsewhere).
        resumable: training checkpoints every epoch and continues after a crash (``FitContext.resume``).
        distributed: trains data-parallel across processes (torchrun).
        onnx: ``lablens export --format onnx`` can export its bundles.
        inputs: ``images`` (``X`` is ``N×S×S×3``, one call per image) or ``bags`` (``X`` is one ``n_i×S×S×3``
            array of cell crops per sample, one call per sample: multiple-instance families).
    """

    uses_groups: bool = False
    folds_validation: bool = False
    resumable: bool = False
    distributed: bool = False
    onnx: bool = False
    inputs: str = "images"


@dataclass(frozen=True)
class EstimatorSpec:
    """A registered name: the family's class and the parameters the name fixes."""

    name: str
    family: type
    fixed: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> Any:
        return self.family.Params

    @property
    def capabilities(self) -> Capabilities:
        return self.family.capabilities

    def describe(self) -> str:
        return f"model {self.name!r} ({self.family.summary})"

    def accepts(self, name: str) -> bool:
        """Whether ``name`` is a setting a user may give this model (fixed ones are not)."""
        return name in self.params.model_fields and name not in self.fixed


ESTIMATORS = Registry("model", unknown="not registered in lablens and not a timm model name")
# Which family module registers which names (imported on first use; tests/models/test_registry_lazy.py checks
# this against the modules). Any other timm name resolves through the deep module's fallback.
_FAMILY_MODULES = {
    "lablens.models.deep": (
        "deep", "densenet121", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
        "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_lite0",
        "efficientnet_lite1", "efficientnet_lite2", "inception_v3", "resnet18", "resnet34", "vgg16",
    ),
    "lablens.models.classical": ("blur_level", "cnn_features", "features", "handcrafted"),
    "lablens.models.head": ("head",),
    "lablens.models.mil": ("mil", "mil-mean"),
    "lablens.models.multitask": ("multitask",),
}
for _module, _names in _FAMILY_MODULES.items():
    ESTIMATORS.lazy(_module, _names)


def _entry(spec: EstimatorSpec) -> Entry:
    return Entry(spec.name, spec.family, spec.family.Params, dict(spec.fixed), spec.family.summary, {})


def register(name: str, *, fixed: dict[str, Any] | None = None) -> Callable[[type], type]:
    """Class decorator (or call) registering a family under ``name``, with the parameters the name fixes."""

    def deco(family: type) -> type:
        return ESTIMATORS.register(name, family, params=family.Params, fixed=fixed, summary=family.summary)

    return deco


def register_fallback(resolver: Callable[[str], EstimatorSpec | None]) -> None:
    """Register a resolver for names not registered explicitly (e.g. any timm model name)."""

    def as_entry(name: str) -> Entry | None:
        spec = resolver(name)
        return None if spec is None else _entry(spec)

    ESTIMATORS.fallback(as_entry)


def list_estimators() -> list[str]:
    """Names of every explicitly registered estimator, sorted."""
    return ESTIMATORS.names()


def list_families() -> list[type]:
    """Every registered family (class) once, in registration order of its names."""
    return list(dict.fromkeys(e.factory for _, e in ESTIMATORS.items()))


def get_spec(name: str) -> EstimatorSpec:
    """The spec of ``name``; an :class:`~lablens.errors.UnknownNameError` with suggestions if it is unknown."""
    entry = ESTIMATORS.entry(name)
    return EstimatorSpec(entry.name, entry.factory, dict(entry.fixed))


def check_params(spec: EstimatorSpec, params: dict[str, Any]) -> Any:
    """The family's typed parameters for ``params``; a :class:`ParamError` naming every setting that does not fit."""
    clashing = {k: v for k, v in params.items() if k in spec.fixed and v != spec.fixed[k]}
    if clashing:
        raise ParamError(
            f"{spec.describe()} fixes {', '.join(f'{k}={spec.fixed[k]!r}' for k in clashing)}; "
            f"use model 'deep' (or another name) to choose it"
        )
    accepted = sorted(k for k in spec.params.model_fields if spec.accepts(k))
    return validate_params(spec.params, {**spec.fixed, **params}, spec.describe(), accepted)


def create_estimator(name: str, **params: Any) -> Any:
    """A new, unfitted estimator of ``name`` with exactly ``params`` (checked; stored untouched)."""
    spec = get_spec(name)
    check_params(spec, params)
    return spec.family(**{**spec.fixed, **params})


__all__ = [
    "ESTIMATORS",
    "Capabilities",
    "EstimatorSpec",
    "ParamError",
    "check_params",
    "create_estimator",
    "get_spec",
    "list_estimators",
    "list_families",
    "register",
    "register_fallback",
]
