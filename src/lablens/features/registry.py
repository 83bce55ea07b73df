"""Feature-extractor registry: every extractor registers by name, and a method's feature part is a spec.

A spec joins extractors with ``+`` and gives options in brackets, the first one positional::

    hu+haralick+lbp
    colour+morphology+haralick[distances=1+2, levels=16]
    deep[efficientnet_lite0]
    deep[resnet18, weights=/path/to/weights.safetensors, stages=2+3+4]

Option values are read as YAML scalars (``16`` → int, ``scratch`` → str); ``a+b+c`` gives a list.
"""

from __future__ import annotations

from typing import Any

import yaml

from lablens.errors import ParamError, SettingError
from lablens.registry import Registry

EXTRACTORS = Registry("feature extractor")


def register_extractor(name: str) -> Any:
    """Class decorator registering a feature extractor under ``name`` (its options: its ``__init__``'s)."""

    def deco(cls: type) -> type:
        cls.name = name
        return EXTRACTORS.register(name, cls)

    return deco


def list_extractors() -> list[str]:
    return EXTRACTORS.names()


def split_top(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` outside brackets (``deep[a, b],hu`` → ``['deep[a, b]', 'hu']`` for ',')."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise SettingError(f"unbalanced ']' in {text!r}")
        if ch == sep and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise SettingError(f"unbalanced '[' in {text!r}")
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _value(text: str) -> Any:
    items = [yaml.safe_load(t.strip()) for t in text.split("+")]
    return items if len(items) > 1 else items[0]


def parse_term(term: str) -> tuple[str, dict[str, Any]]:
    """``deep[resnet18, stages=3+4]`` → ``('deep', {'<positional>': 'resnet18', 'stages': [3, 4]})``."""
    term = term.strip()
    if "[" not in term:
        return term, {}
    if not term.endswith("]"):
        raise SettingError(f"cannot read feature term {term!r}: options go in brackets at the end")
    name, inner = term[: term.index("[")].strip(), term[term.index("[") + 1 : -1]
    kwargs: dict[str, Any] = {}
    for i, opt in enumerate(split_top(inner, ",")):
        if "=" in opt:
            key, val = opt.split("=", 1)
            kwargs[key.strip()] = _value(val)
        elif i == 0:
            kwargs["<positional>"] = _value(opt)
        else:
            raise SettingError(f"option {opt!r} in {term!r} needs a name (key=value)")
    return name, kwargs


def create_extractor(term: str) -> Any:
    """Create the extractor a spec term names, e.g. ``haralick`` or ``deep[efficientnet_lite0]``."""
    name, kwargs = parse_term(term)
    cls = EXTRACTORS.entry(name).factory  # an unknown name: the closest registered ones are suggested
    if "<positional>" in kwargs:
        positional = getattr(cls, "positional", None)
        if positional is None:
            raise ParamError(f"feature extractor {name!r} takes no positional option")
        kwargs[positional] = kwargs.pop("<positional>")
    return EXTRACTORS.create(name, **kwargs)


def create_extractors(spec: str) -> list[Any]:
    """All extractors of a ``+``-joined spec, in order."""
    terms = split_top(spec, "+")
    if not terms:
        raise SettingError("empty feature spec")
    return [create_extractor(t) for t in terms]
