"""Differentiable augmentation for GANs on few images (DiffAugment, Zhao et al. 2020): colour, translation and
cutout applied alike to real and generated batches before the discriminator, so that it cannot memorise the
few real images while the generator still learns the un-augmented distribution.

Three small tensor operations, written here because no maintained library ships them as differentiable
per-sample ops with one shared random source (Kornia's augmentations are not drawn from a given generator).
Draws come from the ``generator`` passed in, so a step replays exactly after a resume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICY = ("colour", "translation", "cutout")


def diff_augment(
    x: torch.Tensor, generator: torch.Generator, policy: tuple[str, ...] = POLICY
) -> torch.Tensor:
    """Augment ``B×3×H×W`` images in [0, 1] by ``policy`` (differentiable in ``x``)."""
    for op in policy:
        x = _OPS[op](x, generator)
    return x


def _rand(generator: torch.Generator, x: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=generator).to(x.device, x.dtype)


def _colour(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    b = len(x)
    x = x + (_rand(g, x, b, 1, 1, 1) - 0.5) * 0.5  # brightness ±0.25
    mean = x.mean(1, keepdim=True)
    x = (x - mean) * (_rand(g, x, b, 1, 1, 1) * 2) + mean  # saturation ×[0, 2]
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(g, x, b, 1, 1, 1) + 0.5) + mean  # contrast ×[0.5, 1.5]


def _translation(x: torch.Tensor, g: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = (torch.randint(-sy, sy + 1, (b, 1, 1), generator=g)).to(x.device)
    dx = (torch.randint(-sx, sx + 1, (b, 1, 1), generator=g)).to(x.device)
    yy, xx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    yy = torch.clamp(yy[None] + dy + 1, 0, h + 1)
    xx = torch.clamp(xx[None] + dx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    return padded.permute(0, 2, 3, 1)[torch.arange(b, device=x.device)[:, None, None], yy, xx].permute(
        0, 3, 1, 2
    )


def _cutout(x: torch.Tensor, g: torch.Generator, ratio: float = 0.25) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=g).to(x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=g).to(x.device)
    yy, xx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    inside = ((yy[None] - oy + ch // 2).abs() < (ch + 1) // 2) & (
        (xx[None] - ox + cw // 2).abs() < (cw + 1) // 2
    )
    return x * (~inside).unsqueeze(1).to(x.dtype)


_OPS = {"colour": _colour, "translation": _translation, "cutout": _cutout}
