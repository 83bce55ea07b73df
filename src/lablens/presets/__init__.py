"""Preset configs that reproduce a reference study's protocol (``lablens compare --preset NAME``).

A preset is a partial run config in YAML, shipped with the package; a user's ``--config`` file and command-line
options are applied on top of it.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The preset's config mapping; ``KeyError`` naming the presets if unknown."""
    names = preset_names()
    if name not in names:
        raise KeyError(f"unknown preset {name!r}; available: {', '.join(names)}")
    text = resources.files(__package__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}
