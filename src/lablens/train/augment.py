"""Microscopy augmentation applied to whole batches on the training device.

Random parameters are *sampled* on the CPU from a seeded ``torch.Generator`` (:func:`sample_params`)
and *applied* by a deterministic function (:func:`apply_params`), so a run replays exactly, also after
a resume, and the same parameters can be inspected or re-applied in tests.

Only label-preserving transforms: flips, 90° and free rotations (cells have no orientation), a small
zoom and shift (one resampling, reflection at the borders), small brightness/contrast/saturation jitter
and per-channel gain (stain and lamp variation), and occasional mild Gaussian blur (focus drift).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lablens.config import AugmentConfig


@dataclass
class AugmentParams:
    """Per-sample parameters for one batch (all tensors have the batch size as first dimension)."""

    flip_h: torch.Tensor  # bool
    flip_v: torch.Tensor  # bool
    rot_k: torch.Tensor  # int64 in 0..3
    angle: torch.Tensor  # free rotation, degrees
    zoom: torch.Tensor  # scale factor
    shift: torch.Tensor  # (B, 2) translation, fraction of the half-size (affine_grid units)
    brightness: torch.Tensor  # multiplicative factor
    contrast: torch.Tensor
    saturation: torch.Tensor
    gain: torch.Tensor  # (B, 3) per-channel factor
    blur_sigma: torch.Tensor  # 0 = no blur

    def to(self, device: torch.device) -> AugmentParams:
        return AugmentParams(**{k: v.to(device) for k, v in self.__dict__.items()})

    def repeat_each(self, k: int) -> AugmentParams:
        """Each sample's parameters ``k`` times in a row (the images of a bag share their item's draw)."""
        return AugmentParams(**{name: v.repeat_interleave(k, dim=0) for name, v in self.__dict__.items()})

    def rows(self, start: int, stop: int) -> AugmentParams:
        """The parameters of samples ``start:stop`` (one rank's part of a global batch)."""
        return AugmentParams(**{k: v[start:stop] for k, v in self.__dict__.items()})


def _uniform(n: int, spread: float, g: torch.Generator) -> torch.Tensor:
    return 1.0 + (torch.rand(n, generator=g) * 2.0 - 1.0) * spread


def sample_params(n: int, cfg: AugmentConfig, generator: torch.Generator) -> AugmentParams:
    """Draw one batch of augmentation parameters (CPU, seeded)."""
    g = generator
    flips_h = torch.rand(n, generator=g) < 0.5
    flips_v = torch.rand(n, generator=g) < 0.5
    rot = torch.randint(0, 4, (n,), generator=g)
    angle = (torch.rand(n, generator=g) * 2.0 - 1.0) * cfg.rotate
    zoom = _uniform(n, cfg.scale, g)
    shift = (torch.rand(n, 2, generator=g) * 2.0 - 1.0) * (2.0 * cfg.translate)
    brightness = _uniform(n, cfg.brightness, g)
    contrast = _uniform(n, cfg.contrast, g)
    saturation = _uniform(n, cfg.saturation, g)
    gain = 1.0 + (torch.rand(n, 3, generator=g) * 2.0 - 1.0) * cfg.channel_gain
    blur_on = torch.rand(n, generator=g) < cfg.blur_prob
    sigma = torch.rand(n, generator=g) * cfg.blur_sigma_max
    return AugmentParams(
        flip_h=flips_h if cfg.flips else torch.zeros_like(flips_h),
        flip_v=flips_v if cfg.flips else torch.zeros_like(flips_v),
        rot_k=rot if cfg.rot90 else torch.zeros_like(rot),
        angle=angle,
        zoom=zoom,
        shift=shift,
        brightness=brightness,
        contrast=contrast,
        saturation=saturation,
        gain=gain,
        blur_sigma=torch.where(blur_on, sigma, torch.zeros_like(sigma)),
    )


def apply_params(x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    """Apply sampled parameters to a float batch ``B×3×H×W`` in [0, 1] (square images for rotations)."""
    x = torch.where(p.flip_h[:, None, None, None], x.flip(-1), x)
    x = torch.where(p.flip_v[:, None, None, None], x.flip(-2), x)
    if bool((p.rot_k != 0).any()):
        rotated = x.clone()
        for k in (1, 2, 3):
            sel = p.rot_k == k
            if bool(sel.any()):
                rotated[sel] = torch.rot90(x[sel], k, dims=(-2, -1))
        x = rotated
    x = affine(x, p.angle, p.zoom, p.shift)
    x = x * p.gain[:, :, None, None]
    x = x * p.brightness[:, None, None, None]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * p.contrast[:, None, None, None] + mean
    grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    x = (x - grey) * p.saturation[:, None, None, None] + grey
    if bool((p.blur_sigma > 0).any()):
        x = gaussian_blur_per_sample(x, p.blur_sigma)
    return x.clamp_(0.0, 1.0)


def affine(x: torch.Tensor, angle: torch.Tensor, zoom: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate by ``angle`` degrees, zoom by ``zoom`` and shift, per sample, in one bilinear resampling with
    reflection at the borders. Samples with the identity transform are left untouched (no resampling)."""
    moved = (angle != 0) | (zoom != 1) | (shift != 0).any(dim=1)
    if not bool(moved.any()):
        return x
    rad = torch.deg2rad(angle.to(x.dtype))
    cos, sin = torch.cos(rad) / zoom, torch.sin(rad) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], dim=1), torch.stack([sin, cos, shift[:, 1]], dim=1)], dim=1
    ).to(device=x.device, dtype=x.dtype)
    sel = moved.nonzero().squeeze(1).to(x.device)
    grid = F.affine_grid(theta[sel], list(x[sel].shape), align_corners=False)
    out = x.clone()
    out[sel] = F.grid_sample(x[sel], grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out


def gaussian_blur_per_sample(x: torch.Tensor, sigma: torch.Tensor, radius: int | None = None) -> torch.Tensor:
    """Separable Gaussian blur with a different sigma per sample (sigma 0 leaves a sample unchanged).

    Written here because torchvision's ``gaussian_blur`` takes one sigma per call; a grouped
    convolution blurs the whole batch in two passes.
    """
    b, c, h, w = x.shape
    if radius is None:
        radius = max(1, int(torch.ceil(3.0 * sigma.max()).item()))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(device=x.device, dtype=x.dtype).clamp_min(1e-6)[:, None]
    kernel = torch.exp(-0.5 * (t[None, :] / s) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = torch.zeros_like(kernel)
    identity[:, radius] = 1.0
    kernel = torch.where((sigma.to(x.device) > 0)[:, None], kernel, identity)
    kernel = kernel.repeat_interleave(c, dim=0)  # (B*C, K)
    flat = x.reshape(1, b * c, h, w)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=b * c)
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)
