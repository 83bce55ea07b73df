"""The task contract: what the engine asks of a model family.

A task owns its networks and says how one training batch becomes losses and how validation is scored; the
engine (:class:`~lablens.train.trainer.Trainer`) owns everything else — devices, processes, precision,
optimiser steps, schedule, averaging, checkpoints, early stopping. A task with several networks and optimisers
(a GAN's generator and discriminator) overrides :meth:`Task.optimizers` and calls ``step.update`` once per
optimiser inside its training step; the loop stays the same.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score

from lablens.config import TrainingSettings


@dataclass
class Batch:
    """One rank's share of a training batch.

    Attributes:
        x: float NCHW images in [0, 1], augmented, on the training device (not yet normalised).
        y: class indices on the device.
        index: the images' rows in the training set.
        epoch, step: 1-based epoch and 0-based global step (seed task-specific draws with these).
        rank: the process's rank (0 for a single process).
    """

    x: torch.Tensor
    y: torch.Tensor
    index: np.ndarray
    epoch: int
    step: int
    rank: int


class StepContext(Protocol):
    """What a training step may ask of the engine."""

    def autocast(self) -> AbstractContextManager: ...

    def update(self, loss: torch.Tensor, optimizer: str = "main") -> None: ...


# (network, uint8 images, *, tta=, prepare=, collect=) → outputs by name, rows in order, the same on every rank
Predict = Callable[..., dict[str, np.ndarray]]


def adamw(modules: list[torch.nn.Module], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and kernels only (not on biases and norm scales)."""
    decay, no_decay = [], []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def classification_scores(logits: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, float]:
    """Validation loss and the selectable metrics (``val_<monitor>``) of one set of logits."""
    pred = logits.argmax(1)
    loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)).item()
    return {
        "val_loss": loss,
        "val_accuracy": float((pred == y).mean()),
        "val_balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "val_macro_f1": float(
            f1_score(y, pred, labels=np.arange(n_classes), average="macro", zero_division=0)
        ),
    }


class Task:
    """Base of every task: ``networks`` by name; ``model_name`` is the one evaluated, averaged (EMA) and kept."""

    model_name = "net"

    def __init__(self, networks: dict[str, torch.nn.Module]) -> None:
        self.networks = networks

    @property
    def model(self) -> torch.nn.Module:
        return self.networks[self.model_name]

    def optimizers(self, settings: TrainingSettings, lr: float) -> dict[str, torch.optim.Optimizer]:
        """One AdamW (``main``) over every network."""
        return {"main": adamw(list(self.networks.values()), lr, settings.weight_decay)}

    def training_step(
        self, nets: dict[str, Any], batch: Batch, step: StepContext
    ) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        """Compute the losses of ``batch`` with ``nets`` (the engine's wrapped networks), call ``step.update``,
        and return the detached loss parts to log (``loss`` first)."""
        raise NotImplementedError

    def validate(
        self, model: torch.nn.Module, x_val: np.ndarray, y_val: np.ndarray, predict: Predict
    ) -> dict[str, float]:  # pragma: no cover - abstract
        """Scores of ``model`` on the validation images, with ``val_loss`` and ``val_<monitor>`` keys."""
        raise NotImplementedError
