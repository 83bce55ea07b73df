"""A small class-conditional denoiser for DDPM/DDIM at 32–128 px: diffusers' ``UNet2DModel`` with a learned
class embedding added to the time embedding.

Widths ``(w, 2w, 2w, …)``: one resolution level per halving down to 8 px, self-attention only at the lowest
level (cheap there, and where the layout of a cell is decided). At 32 px and ``w = 32`` it has about 1.1 M
parameters — a training step of 32 images takes ~0.5 s on 2 CPU cores.
"""

from __future__ import annotations

import math

import torch
from diffusers import UNet2DModel
from torch import nn

from lablens.errors import SettingError


def _levels(image_size: int) -> int:
    levels = math.log2(image_size / 8)
    if image_size < 16 or levels != int(levels):
        raise SettingError(
            f"image_size {image_size}: the diffusion model works at powers of two from 16 px (32, 64, 128 …)"
        )
    return int(levels) + 1


class ClassDenoiser(nn.Module):
    """Predicts the noise in ``x_t`` (``N×3×S×S`` in [-1, 1]) at timesteps ``t`` for classes ``y``."""

    def __init__(self, n_classes: int, image_size: int, width: int = 32) -> None:
        super().__init__()
        levels = _levels(image_size)
        self.image_size = image_size
        self.unet = UNet2DModel(
            sample_size=image_size,
            in_channels=3,
            out_channels=3,
            layers_per_block=1,
            block_out_channels=(width,) + (2 * width,) * (levels - 1),
            down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
            up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
            num_class_embeds=n_classes,
            norm_num_groups=8,
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, class_labels=y).sample
