"""The blur multi-task (DeepMT-ND's design): classify, grade blur and de-blur, learnt from clean images alone.

Each training batch is augmented as usual, then degraded on the fly by the degradation protocol: with probability
``blur_prob`` an image gets a blur level drawn uniformly from the positive ``levels`` (else it stays clean), a kind
from ``kinds`` and sensor noise. The network sees the degraded image and learns its class (the classification
loss), its blur level (smooth L1, weight ``quality_weight``) and the clean image (L1 on the de-blurred output,
weight ``deblur_weight``). A weight of 0 switches that task off, down to a single-task classifier trained under
blur augmentation.

Validation degrades every validation image at every level of ``val_levels`` (fixed records) and averages the
scores over the levels. Degradations are drawn from generators seeded by (seed, epoch, step, rank): runs replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lablens.quality.degrade import Degradation, sample_degradation
from lablens.quality.torch_degrade import degrade_tensor
from lablens.train.tasks.base import Batch, Predict, StepContext, classification_scores
from lablens.train.tasks.classification import ClassificationTask


@dataclass(frozen=True)
class BlurSettings:
    """The degradation protocol of training and validation, and the weights of the auxiliary losses."""

    levels: tuple[int, ...] = (0, 1, 2, 3, 4)
    val_levels: tuple[int, ...] | None = None  # levels validation is scored at (None: ``levels``)
    kinds: tuple[str, ...] = ("defocus", "gaussian", "motion")
    noise: float = 0.01
    blur_prob: float = 0.8
    quality_weight: float = 0.5
    deblur_weight: float = 1.0
    seed: int = 0


def training_records(n: int, s: BlurSettings, rng: np.random.Generator) -> list[Degradation]:
    """The degradation of each image of a training batch (level 0 with probability 1 − blur_prob)."""
    positive = [lv for lv in s.levels if lv > 0]
    records = []
    for _ in range(n):
        level = int(rng.choice(positive)) if positive and rng.random() < s.blur_prob else 0
        records.append(sample_degradation(level, s.kinds, rng, s.noise))
    return records


def fixed_records(n: int, level: int, s: BlurSettings, seed: int) -> list[Degradation]:
    """Deterministic records for evaluating ``n`` images at one level (the same on every call)."""
    rng = np.random.default_rng([seed, 7919, level])
    return [sample_degradation(level, s.kinds, rng, s.noise) for _ in range(n)]


def degrader(records: Sequence[Degradation]) -> Any:
    """A ``prepare`` hook for :func:`~lablens.nn.network.run_network`: degrade row ``i`` by ``records[i]``."""

    def prepare(x: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return degrade_tensor(x, [records[i] for i in rows])

    return prepare


class BlurMultiTask(ClassificationTask):
    """Train a :class:`~lablens.models.multitask_net.MultiTaskNet` under synthetic blur (see module docstring):
    the classification task with degraded inputs and two auxiliary losses."""

    def __init__(self, *args: Any, blur: BlurSettings, **kwargs: Any) -> None:
        """The arguments of :class:`ClassificationTask`, and the degradation protocol ``blur``."""
        super().__init__(*args, **kwargs)
        self.blur = blur

    def training_step(self, nets: dict[str, Any], batch: Batch, step: StepContext) -> dict[str, torch.Tensor]:
        s, clean = self.blur, batch.x
        rng = np.random.default_rng([s.seed, batch.epoch, batch.step, batch.rank])
        records = training_records(len(clean), s, rng)
        blurred = degrade_tensor(clean, records)
        with step.autocast():
            out = nets["net"](self.norm.normalize(blurred))
        parts = {"cls": self.loss.to(clean.device)(out["logits"].float(), batch.y)}
        loss = parts["cls"]
        if "level" in out and s.quality_weight > 0:
            level = torch.tensor([r.level for r in records], dtype=torch.float32, device=clean.device)
            parts["quality"] = F.smooth_l1_loss(out["level"].float(), level)
            loss = loss + s.quality_weight * parts["quality"]
        if "residual" in out and s.deblur_weight > 0:
            restored = (blurred + out["residual"].float()).clamp(0, 1)
            parts["deblur"] = F.l1_loss(restored, clean)
            loss = loss + s.deblur_weight * parts["deblur"]
        step.update(loss)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in parts.items()}}

    def validate(
        self, model: torch.nn.Module, x_val: np.ndarray, y_val: np.ndarray, predict: Predict
    ) -> dict[str, float]:
        s = self.blur
        per_level: list[dict[str, float]] = []
        record: dict[str, float] = {}
        for level in s.val_levels if s.val_levels is not None else s.levels:
            prepare = degrader(fixed_records(len(x_val), level, s, s.seed))
            logits = predict(model, x_val, mean=self.mean, std=self.std, tta=self.tta, prepare=prepare)[
                "logits"
            ]
            scores = classification_scores(logits, y_val, self.n_classes)
            record[f"val_macro_f1_L{level}"] = scores["val_macro_f1"]
            per_level.append(scores)
        record.update({k: float(np.mean([p[k] for p in per_level])) for k in per_level[0]})
        return record
