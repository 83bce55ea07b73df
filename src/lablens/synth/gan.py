"""A class-conditional GAN as an estimator: ``fit(X, y, groups=…)`` on the training partition, ``sample`` images,
``save``/``load`` as a bundle (see :mod:`lablens.synth.base`).

Training runs on the one engine (:class:`~lablens.synth.gan_task.GANTask`). A slice of the given images, held
out by group, only picks the epoch (KID of generated vs held-out images). The workflow records the sha256 of
every image given to ``fit`` with each synthetic set (``sources.csv``), so a run can refuse a leak.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lablens.config import TrainingSettings
from lablens.models.gan_net import Discriminator, Generator
from lablens.synth.base import ImageGenerator, generator_settings
from lablens.synth.fidelity import kid
from lablens.synth.gan_task import GANTask, sample_images
from lablens.synth.registry import register_generator


@register_generator
class GANGenerator(ImageGenerator):
    """A FastGAN-style class-conditional generator with DiffAugment (see :mod:`lablens.models.gan_net`).

    Args:
        image_size: side of the generated images (a power of two, 16–256).
        width: channel width of both networks (32 suits a CPU at 64 px).
        z_dim: noise size.
        epochs, batch_size, lr, seed: training (class-balanced batches).
        kid_features: ``imagenet`` (EfficientNet-Lite0, offline) or ``pixels`` — what picks the epoch.
    """

    name = "gan"

    def __init__(
        self,
        image_size: int = 64,
        width: int = 32,
        z_dim: int = 128,
        epochs: int = 60,
        batch_size: int = 32,
        lr: float = 2e-4,
        seed: int = 0,
        kid_features: str = "imagenet",
    ) -> None:
        self.image_size = image_size
        self.width = width
        self.z_dim = z_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.kid_features = kid_features

    def network(self, n_classes: int) -> Generator:
        torch.manual_seed(self.seed)
        return Generator(n_classes, self.image_size, self.z_dim, self.width)

    def task(self, n_classes: int, features: Any, x_train: np.ndarray) -> tuple[GANTask, TrainingSettings]:
        generator = self.network(n_classes)
        discriminator = Discriminator(n_classes, self.image_size, self.width)  # seeded after the generator
        task = GANTask(
            generator, discriminator, features, seed=self.seed, kid=lambda a, b: kid(a, b, subsets=20).mean
        )
        settings = generator_settings(self.epochs, min(self.batch_size, len(x_train)), self.lr, self.seed)
        return task, settings

    def draw(self, net: torch.nn.Module, labels: np.ndarray, seed: int) -> np.ndarray:
        return sample_images(net, labels, seed)
