"""A class-conditional diffusion model as an estimator (DDPM training, DDIM sampling; see
:mod:`lablens.synth.diffusion_task`), with early stopping against memorisation.

The same contract as the GAN (:mod:`lablens.synth.base`): ``fit`` on the training partition, ``sample`` by class
name and seed, a bundle with the denoiser's weights. Slower to sample than a GAN (``sample_steps`` network
passes per image) but stable to train on a few hundred images and easy to check for copies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lablens.config import TrainingSettings
from lablens.models.diffusion_net import ClassDenoiser
from lablens.synth.base import ImageGenerator, generator_settings
from lablens.synth.diffusion_task import DiffusionTask, ddim_sample
from lablens.synth.fidelity import kid
from lablens.synth.registry import register_generator


@register_generator
class DiffusionGenerator(ImageGenerator):
    """A small class-conditional DDPM (diffusers' ``UNet2DModel``) sampled by DDIM.

    Args:
        image_size: side of the generated images (a power of two, 16–256).
        width: channels of the first level (the others have twice as many); 32 suits a CPU at 32 px.
        epochs, batch_size, lr, seed: training (class-balanced batches, EMA weights). Small batches and a high
            learning rate: on a CPU a diffusion model is limited by optimiser steps (about 1,900 at the defaults
            on 750 images at 32 px, ~10 minutes on 2 cores — enough for cell-like images, not for fine detail).
        patience: epochs without a better ``val_loss`` (KID, penalised when samples copy training images)
            before training stops; ``None`` trains every epoch.
        sample_steps: DDIM steps per generated image.
        kid_features: ``imagenet`` (EfficientNet-Lite0, offline) or ``pixels`` — what picks the epoch.
    """

    name = "diffusion"

    def __init__(
        self,
        image_size: int = 32,
        width: int = 32,
        epochs: int = 40,
        batch_size: int = 16,
        lr: float = 2e-3,
        seed: int = 0,
        patience: int | None = 10,
        sample_steps: int = 50,
        kid_features: str = "imagenet",
    ) -> None:
        self.image_size = image_size
        self.width = width
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.patience = patience
        self.sample_steps = sample_steps
        self.kid_features = kid_features

    def network(self, n_classes: int) -> ClassDenoiser:
        torch.manual_seed(self.seed)
        return ClassDenoiser(n_classes, self.image_size, self.width)

    def task(
        self, n_classes: int, features: Any, x_train: np.ndarray
    ) -> tuple[DiffusionTask, TrainingSettings]:
        task = DiffusionTask(
            self.network(n_classes),
            features,
            x_train,
            kid=lambda a, b: kid(a, b, subsets=20).mean,
            seed=self.seed,
            sample_steps=max(10, self.sample_steps // 5),  # validation only ranks epochs
        )
        settings = generator_settings(
            self.epochs,
            min(self.batch_size, len(x_train)),
            self.lr,
            self.seed,
            patience=self.patience,
            warmup_epochs=1.0,
            grad_clip=1.0,
        )
        return task, settings

    def draw(self, net: torch.nn.Module, labels: np.ndarray, seed: int) -> np.ndarray:
        return ddim_sample(net, labels, seed, steps=self.sample_steps)
