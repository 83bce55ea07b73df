"""Generator registry: ``lablens synthesize --method NAME`` and saved generator bundles resolve through it (filled
when :mod:`lablens.synth` is imported)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lablens.infer.bundle import BundleError, read_bundle_files
from lablens.registry import Registry
from lablens.synth.base import ImageGenerator

GENERATORS = Registry("generator")


def register_generator(cls: type[ImageGenerator]) -> type[ImageGenerator]:
    """Class decorator: register a generator family under its ``name`` (its settings: its ``__init__``'s)."""
    return GENERATORS.register(cls.name, cls)


def list_generators() -> list[str]:
    """Names of the registered generator families, sorted."""
    return GENERATORS.names()


def create_generator(name: str, **params: Any) -> ImageGenerator:
    """A new generator of family ``name``; an unknown name or parameter is a one-line error."""
    return GENERATORS.create(name, **params)


def load_generator(path: str | Path) -> tuple[ImageGenerator, str]:
    """A saved generator of any family and its bundle hash; :class:`BundleError` says why a path is not one."""
    card, tensors, digest = read_bundle_files(path)
    name = (card.get("generator") or {}).get("name")
    if name not in GENERATORS:
        raise BundleError(f"{path}: not a generator bundle (lablens synthesize writes them)")
    return GENERATORS.entry(name).factory.from_bundle(card, tensors, path), digest
