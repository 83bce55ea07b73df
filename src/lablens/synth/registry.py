"""Generator registry: ``lablens synthesize --method NAME`` and saved generator bundles resolve through it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lablens.infer.bundle import BundleError, read_bundle_files
from lablens.synth.base import ImageGenerator

_GENERATORS: dict[str, type[ImageGenerator]] = {}


def register_generator(cls: type[ImageGenerator]) -> type[ImageGenerator]:
    """Class decorator: register a generator family under its ``name``."""
    if _GENERATORS.get(cls.name, cls) is not cls:
        raise ValueError(f"generator name {cls.name!r} is already registered")
    _GENERATORS[cls.name] = cls
    return cls


def _ensure_loaded() -> None:
    from lablens.synth import diffusion, gan  # noqa: F401  (importing the families registers them)


def list_generators() -> list[str]:
    """Names of the registered generator families, sorted."""
    _ensure_loaded()
    return sorted(_GENERATORS)


def create_generator(name: str, **params: Any) -> ImageGenerator:
    """A new generator of family ``name``; an unknown name or parameter is a one-line error."""
    _ensure_loaded()
    if name not in _GENERATORS:
        raise KeyError(f"unknown generator {name!r}: choose {' | '.join(sorted(_GENERATORS))}")
    cls = _GENERATORS[name]
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        raise ValueError(f"the {name} generator has no parameter {unknown[0]!r}")
    return cls(**params)


def load_generator(path: str | Path) -> tuple[ImageGenerator, str]:
    """A saved generator of any family and its bundle hash; :class:`BundleError` says why a path is not one."""
    _ensure_loaded()
    card, tensors, digest = read_bundle_files(path)
    name = (card.get("generator") or {}).get("name")
    if name not in _GENERATORS:
        raise BundleError(f"{path}: not a generator bundle (lablens synthesize writes them)")
    return _GENERATORS[name].from_bundle(card, tensors, path), digest
