"""The options of the engines that run archive jobs (``predict``, ``analyze``), checked where they apply.

A Ray option given with the local engine, or an archive option given for a single CSV/JSON output, is an
error naming it (never ignored); the Ray settings are built only for ``--engine ray``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from lablens.errors import SettingError

#: the engines an archive job runs on
ENGINES = ("local", "ray")
#: each Ray setting's command-line option, as messages name it
RAY_FLAGS = {
    "address": "--ray-address",
    "actors": "--actors",
    "actor_cpus": "--actor-cpus",
    "actor_gpus": "--actor-gpus",
    "num_cpus": "ray.num_cpus",  # a config file's setting only
}


class RayOptions(BaseModel):
    """``--ray-address``, ``--actors``, ``--actor-cpus``, ``--actor-gpus`` as given (None: not given), and the CPUs
    of a local Ray cluster started for the job (``num_cpus``; None: all of this machine's)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = None
    actors: int | None = None
    actor_cpus: float | None = None
    actor_gpus: float | None = None
    num_cpus: int | None = None

    def given(self) -> list[str]:
        return [RAY_FLAGS[k] for k, v in self.model_dump().items() if v is not None]

    def settings(self, engine: str) -> Any:
        """The engine's Ray settings (None for the local engine, which takes none of these options)."""
        if engine != "ray":
            if self.given():
                raise SettingError(f"{', '.join(self.given())} apply only with --engine ray")
            return None
        from lablens.infer.ray_engine import RaySettings

        return RaySettings(
            address=self.address,
            num_cpus=self.num_cpus,
            model_actors=self.actors or 1,
            actor_cpus=self.actor_cpus or 1.0,
            actor_gpus=self.actor_gpus or 0.0,
        )
