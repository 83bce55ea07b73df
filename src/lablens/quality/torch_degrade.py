"""The degradation protocol on a batch of float tensors, for on-the-fly blur during training and evaluation.

Same records and kernels as :mod:`lablens.quality.degrade` (a :class:`Degradation` per image, a PSF scaled
to the image side), applied on the device with one grouped convolution per batch. Reflect padding matches
OpenCV's ``BORDER_REFLECT_101`` used for files; noise comes from a generator seeded by the record, so the
same records give the same tensors.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lablens.quality.degrade import Degradation, degradation_kernel


@functools.lru_cache(maxsize=512)
def _kernel(kind: str, sd_frac: float, angle_deg: float, side: int) -> np.ndarray:
    return degradation_kernel(Degradation(level=1, kind=kind, sd_frac=sd_frac, angle_deg=angle_deg), side)


def degrade_tensor(x: torch.Tensor, degradations: Sequence[Degradation]) -> torch.Tensor:
    """Blur and add noise to ``B×C×H×W`` float images in [0, 1], one record per image; returns a new tensor."""
    b, c, h, w = x.shape
    if len(degradations) != b:
        raise ValueError(f"{len(degradations)} degradation records for a batch of {b}")
    side = min(h, w)
    kernels = [
        _kernel(d.kind, d.sd_frac, d.angle_deg, side) if d.level > 0 and d.kind != "none" else np.ones((1, 1))
        for d in degradations
    ]
    k = max(kern.shape[0] for kern in kernels)
    if k > 1:
        stack = np.zeros((b, k, k), np.float32)
        for i, kern in enumerate(kernels):
            o = (k - kern.shape[0]) // 2
            stack[i, o : o + kern.shape[0], o : o + kern.shape[1]] = kern
        weight = torch.from_numpy(stack).to(x.device, x.dtype).repeat_interleave(c, 0).unsqueeze(1)
        pad = k // 2
        if pad >= min(h, w):  # reflect padding needs the pad smaller than the image
            xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        else:
            xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        out = F.conv2d(xp.reshape(1, b * c, h + 2 * pad, w + 2 * pad), weight, groups=b * c).reshape(
            b, c, h, w
        )
    else:
        out = x.clone()
    sigmas = [d.noise_sigma if d.level > 0 else 0.0 for d in degradations]
    if any(s > 0 for s in sigmas):
        noise = torch.stack(
            [
                torch.randn((c, h, w), generator=torch.Generator().manual_seed(int(d.noise_seed))) * s
                for d, s in zip(degradations, sigmas, strict=True)
            ]
        )
        out = out + noise.to(out.device, out.dtype)
    return out.clamp_(0.0, 1.0)
