"""Object detection by centre points: a :class:`~lablens.models.centre_net.CentreNet` taught on field tiles.

The engine hands a batch of tiles (its rows in ``batch.index``); the task looks up their target maps, turns tiles
and targets by one of the eight flips/rotations and varies the stain's brightness — both drawn from the step's
seed, so a resumed run replays them — and computes CenterNet's loss. The engine's own augmentation stays off:
its free rotations and zooms would move the objects away from their boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lablens.fields.centres import centre_loss, dihedral_targets
from lablens.nn.network import Normalizer, dihedral
from lablens.train.order import mix_seed
from lablens.train.tasks.base import Batch, Predict, StepContext, Task

#: salt of the task's per-step draws (apart from the engine's)
SALT = 4051


class CentreTask(Task):
    """Train ``net`` on tiles whose targets are ``targets`` (``N×6×h×w``, rows as the engine's images) and
    ``val_targets`` (for the validation tiles); ``brightness`` is the largest relative change of the stain's
    brightness (a serum's titer, a lamp's age)."""

    def __init__(
        self,
        net: torch.nn.Module,
        targets: np.ndarray,
        val_targets: np.ndarray | None,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        seed: int = 0,
        brightness: float = 0.4,
        channels_last: bool = False,
    ) -> None:
        super().__init__({"net": net})
        self.targets = torch.from_numpy(np.ascontiguousarray(targets))
        self.val_targets = (
            None if val_targets is None else torch.from_numpy(np.ascontiguousarray(val_targets))
        )
        self.mean, self.std = tuple(mean), tuple(std)
        self.norm = Normalizer(mean, std, channels_last)
        self.seed, self.brightness = seed, brightness

    def training_step(self, nets: dict[str, Any], batch: Batch, step: StepContext) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(mix_seed(self.seed, SALT, batch.step, batch.rank))
        view = int(torch.randint(8, (1,), generator=gen))
        gain = 1.0 + self.brightness * (2 * torch.rand(len(batch.index), generator=gen) - 1)
        x = dihedral(batch.x, view) * gain.to(batch.x.device)[:, None, None, None]
        target = dihedral_targets(self.targets[torch.as_tensor(batch.index)], view).to(batch.x.device)
        with step.autocast():
            out = nets["net"](self.norm.normalize(x.clamp(0, 1)))
        losses = centre_loss(out, target)
        step.update(losses["loss"])
        return {name: value.detach() for name, value in losses.items()}

    def validate(
        self, model: torch.nn.Module, x_val: np.ndarray, y_val: np.ndarray, predict: Predict
    ) -> dict[str, float]:
        if self.val_targets is None:
            raise ValueError("validation tiles were given without their targets")
        out = torch.from_numpy(predict(model, x_val, mean=self.mean, std=self.std)["logits"])
        losses = centre_loss(out, self.val_targets)
        return {
            "val_loss": float(losses["loss"]),
            "val_heat": float(losses["heat"]),
            "val_box": float(losses["box"]),
        }
