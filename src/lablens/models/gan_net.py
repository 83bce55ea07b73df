"""A small class-conditional GAN for a few hundred images at 32–128 px (after FastGAN, Liu et al. 2021, and the
projection discriminator, Miyato & Koyama 2018).

Generator: noise and a learned class embedding → 4×4 → nearest-neighbour upsampling blocks with gated linear
units (FastGAN's "up" block) → RGB in [0, 1]. Discriminator: strided convolutions with spectral normalisation
down to 4×4, a pooled feature, an unconditional score plus the projection of the feature on the class's
embedding. Both are plain ``nn.Module``\\ s the training engine trains (:mod:`lablens.synth.gan_task`).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn
from torch.nn.utils import spectral_norm

from lablens.errors import SettingError


def _stages(image_size: int) -> int:
    stages = math.log2(image_size / 4)
    if image_size < 16 or stages != int(stages):
        raise SettingError(
            f"image_size {image_size}: the GAN works at powers of two from 16 px (32, 64, 128 …)"
        )
    return int(stages)


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(cin, 2 * cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * cout),
            nn.GLU(dim=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Generator(nn.Module):
    """``(z: B×z_dim, y: B) → B×3×S×S`` images in [0, 1]."""

    def __init__(self, n_classes: int, image_size: int = 64, z_dim: int = 128, width: int = 64) -> None:
        super().__init__()
        self.z_dim, self.n_classes = z_dim, n_classes
        stages = _stages(image_size)
        chans = [min(8, 2 ** (stages - i)) * width for i in range(stages + 1)]
        self.embed = nn.Embedding(n_classes, z_dim)
        self.start = nn.Sequential(nn.Linear(2 * z_dim, chans[0] * 16, bias=False), nn.GLU(dim=1))
        self.start_channels = chans[0] // 2
        ups = [_Up(self.start_channels, chans[1])] + [_Up(chans[i], chans[i + 1]) for i in range(1, stages)]
        self.ups = nn.Sequential(*ups)
        self.out = nn.Conv2d(chans[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.start(torch.cat([z, self.embed(y)], 1)).view(len(z), self.start_channels, 4, 4)
        return (torch.tanh(self.out(self.ups(h))) + 1) / 2


class Discriminator(nn.Module):
    """``(x in [0, 1]: B×3×S×S, y: B) → B`` realness scores (hinge loss)."""

    def __init__(self, n_classes: int, image_size: int = 64, width: int = 64) -> None:
        super().__init__()
        stages = _stages(image_size)
        chans = [3] + [min(8, 2**i) * width for i in range(stages)]
        layers: list[nn.Module] = []
        for cin, cout in itertools.pairwise(chans):
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.score = spectral_norm(nn.Linear(chans[-1], 1))
        self.embed = spectral_norm(nn.Embedding(n_classes, chans[-1]))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.body(x * 2 - 1).sum((2, 3))
        return self.score(h).squeeze(1) + (self.embed(y) * h).sum(1)
