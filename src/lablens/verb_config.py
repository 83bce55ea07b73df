"""A verb's typed settings: YAML → one pydantic model per verb, written beside the verb's outputs.

``train``, ``compare``, ``evaluate``, ``promote``, ``degrade`` and ``blur-study`` take the
:class:`~lablens.config.RunConfig`; every other verb with settings has one :class:`VerbConfig` subclass beside
its workflow (``AnalyzeConfig``, ``PredictConfig`` …). A verb's inputs and outputs (bundle, images, ``--out``)
and its runtime context (progress) are arguments of the workflow, not settings, so a written config can be
given again to another run (``--config``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import yaml
from typing_extensions import Self  # typing.Self from Python 3.11; pydantic requires typing_extensions

from lablens.config import StrictModel, deep_merge, read_config_file, validated
from lablens.errors import SettingError


class VerbConfig(StrictModel):
    """Settings of one verb; unknown keys are errors naming them."""

    verb: ClassVar[str] = ""

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Self:
        """The YAML file at ``path`` (missing keys take defaults) with ``overrides`` over it: dotted keys
        (``ray.actors``) to values; None values are not given."""
        raw = read_config_file(path) if path is not None else {}
        raw = deep_merge(raw, nested(overrides or {}))
        return validated(cls, raw, where=str(path) if path is not None else f"lablens {cls.verb}")

    @classmethod
    def resolve(cls, cfg: Self | None, settings: dict[str, Any]) -> Self:
        """What a workflow runs with: ``cfg``, or one made of keyword ``settings`` (giving both is an error)."""
        if cfg is not None and settings:
            raise SettingError(f"give a {cls.__name__} or the settings {', '.join(settings)}, not both")
        return cfg if cfg is not None else validated(cls, settings, where=f"lablens {cls.verb}")

    def write(self, path: str | Path) -> Path:
        """Write these settings as YAML to ``path`` (loadable again with :meth:`load`)."""
        path = Path(path)
        path.write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
        return path


def nested(dotted: dict[str, Any]) -> dict[str, Any]:
    """``{"ray.actors": 2}`` → ``{"ray": {"actors": 2}}``; None values are left out."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        if value is None:
            continue
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out
