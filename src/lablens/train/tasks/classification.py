"""Single-label classification: one network, a class-balanced (or focal) loss, scored on validation images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lablens.nn.network import Normalizer
from lablens.train.imbalance import ClassificationLoss
from lablens.train.tasks.base import Batch, Predict, StepContext, Task, classification_scores


class ClassificationTask(Task):
    """Train ``net`` (images → logits) with ``loss``; validation scores the logits the way the model will predict:
    8-view TTA when ``tta``, for every image or (``tta_margin``) only for those whose top-2 margin is below it."""

    def __init__(
        self,
        net: torch.nn.Module,
        n_classes: int,
        loss: ClassificationLoss,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        tta: bool = False,
        tta_margin: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__({"net": net})
        self.n_classes = n_classes
        self.loss = loss
        self.mean, self.std = tuple(mean), tuple(std)
        self.norm = Normalizer(mean, std, channels_last)
        self.tta, self.tta_margin = tta, tta_margin

    def training_step(self, nets: dict[str, Any], batch: Batch, step: StepContext) -> dict[str, torch.Tensor]:
        with step.autocast():
            logits = nets["net"](self.norm.normalize(batch.x))
        loss = self.loss.to(logits.device)(logits, batch.y)
        step.update(loss)
        return {"loss": loss.detach()}

    def validate(
        self, model: torch.nn.Module, x_val: np.ndarray, y_val: np.ndarray, predict: Predict
    ) -> dict[str, float]:
        policy = {"tta": self.tta, "tta_margin": self.tta_margin}
        logits = predict(model, x_val, mean=self.mean, std=self.std, **policy)["logits"]
        return classification_scores(logits, y_val, self.n_classes)
