"""Multiple-instance learning: a sample's label taught through bags of its cells.

Training items are bags of a fixed number of cells (``B×K`` crops drawn from one sample before training; see
:func:`lablens.models.mil.training_bags`); validation scores each validation sample once over all of its cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lablens.nn.network import run_network
from lablens.train.tasks.base import Batch, Predict, StepContext, classification_scores
from lablens.train.tasks.classification import ClassificationTask


def bag_outputs(
    net: torch.nn.Module,
    bags: Sequence[np.ndarray],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    amp: bool = True,
    tta: bool = False,
    tta_margin: float | None = None,
) -> list[dict[str, np.ndarray]]:
    """Every output of ``net`` for each bag (``n_i×S×S×3`` uint8 cells), one bag at a time (sizes differ)."""
    out = []
    for bag in bags:
        res = run_network(
            net,
            np.asarray(bag)[None],
            mean=mean,
            std=std,
            device=device,
            batch_size=1,
            amp=amp,
            tta=tta,
            tta_margin=tta_margin,
        )
        out.append({name: value[0] for name, value in res.items()})
    return out


class MILTask(ClassificationTask):
    """Train a :class:`~lablens.models.mil_net.MILNet` on bags (its ``logits`` output); validation calls each
    validation sample over all of its cells."""

    def __init__(self, *args: Any, amp: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.amp = amp

    def training_step(self, nets: dict[str, Any], batch: Batch, step: StepContext) -> dict[str, torch.Tensor]:
        with step.autocast():
            logits = nets["net"](self.norm.normalize(batch.x))["logits"]
        loss = self.loss.to(logits.device)(logits.float(), batch.y)
        step.update(loss)
        return {"loss": loss.detach()}

    def validate(
        self, model: torch.nn.Module, x_val: Any, y_val: np.ndarray, predict: Predict
    ) -> dict[str, float]:
        device = next(model.parameters()).device
        outs = bag_outputs(
            model, x_val, mean=self.mean, std=self.std, device=device, amp=self.amp, tta=self.tta
        )
        logits = np.stack([o["logits"] for o in outs])
        return classification_scores(logits, y_val, self.n_classes)
