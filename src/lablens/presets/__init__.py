"""Preset configs that reproduce a reference study's protocol (``lablens compare --preset NAME``).

A preset is a partial run config in YAML, shipped with the package; a user's ``--config`` file and command-line
options are applied on top of it. :data:`STUDY_PRESETS` holds them by name (the file's stem).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from lablens.registry import Registry

#: the shipped study protocols: name → the YAML file's text, read on use
STUDY_PRESETS = Registry("preset")
for _file in resources.files(__package__).iterdir():
    if _file.name.endswith(".yaml"):
        STUDY_PRESETS.register(_file.name[:-5], value=_file)


def preset_names() -> list[str]:
    return STUDY_PRESETS.names()


def load_preset(name: str) -> dict[str, Any]:
    """The preset's config mapping; an UnknownNameError naming close presets if unknown."""
    text = STUDY_PRESETS.value(name).read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}
