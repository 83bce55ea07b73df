"""Estimator registry: every trainable model family registers by name, like timm's model registry.

A registered name maps to a factory that takes keyword arguments and returns an estimator obeying
the scikit-learn contract (``fit`` returns self, ``predict_proba``, ``classes_``, parameters stored
untouched in ``__init__``). ``create_estimator`` is the one factory used by configs, the CLI and
bundle loading.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, Callable[..., Any]] = {}
_FALLBACKS: list[Callable[[str], Callable[..., Any] | None]] = []


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering an estimator factory (a class or a function) under ``name``."""

    def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"estimator name {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return deco


def register_fallback(resolver: Callable[[str], Callable[..., Any] | None]) -> None:
    """Register a resolver for names not registered explicitly (e.g. any timm model name)."""
    _FALLBACKS.append(resolver)


def _ensure_loaded() -> None:
    # Importing the model modules runs their @register decorators.
    from lablens import models  # noqa: F401
    from lablens.models import deep  # noqa: F401


def list_estimators() -> list[str]:
    """Names of every explicitly registered estimator, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_factory(name: str) -> Callable[..., Any]:
    """Return the factory for ``name``; raise ``KeyError`` with suggestions if unknown."""
    _ensure_loaded()
    if name in _REGISTRY:
        return _REGISTRY[name]
    for resolver in _FALLBACKS:
        factory = resolver(name)
        if factory is not None:
            return factory
    import difflib

    close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"unknown model {name!r}: not registered in lablens and not a timm model name.{hint}")


def accepted_parameters(name: str) -> set[str]:
    """The keyword arguments the factory registered as ``name`` takes (a partial's fixed ones excluded)."""
    import functools
    import inspect

    factory = get_factory(name)
    fixed: set[str] = set()
    while isinstance(factory, functools.partial):
        fixed |= set(factory.keywords)
        factory = factory.func
    target = factory.__init__ if isinstance(factory, type) else factory
    params = inspect.signature(target).parameters
    return {p for p in params if p != "self"} - fixed


def create_estimator(name: str, **kwargs: Any) -> Any:
    """Create the estimator registered as ``name`` with explicit keyword arguments."""
    return get_factory(name)(**kwargs)
