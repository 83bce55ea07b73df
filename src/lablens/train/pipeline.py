"""The input pipeline of training: decoded uint8 images held on the device, batches augmented there.

Per step the CPU only indexes a tensor; conversion to float and augmentation run on the device (see
:mod:`lablens.train.augment`), so a GPU is never starved by JPEG decoding or DataLoader workers.
"""

from __future__ import annotations

import numpy as np
import torch

from lablens.nn.network import Normalizer
from lablens.train.augment import AugmentParams, apply_params


class DeviceImages:
    """uint8 NHWC images resident on the device (or pinned host memory when they would not fit)."""

    def __init__(self, images: np.ndarray, device: torch.device) -> None:
        host = torch.from_numpy(np.array(images))  # a writable in-memory copy of the (read-only) cache
        self.device = device
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            self.data = host.to(device) if host.numel() < 0.3 * free else host.pin_memory()
        else:
            self.data = host

    def __len__(self) -> int:
        return self.data.shape[0]

    def batch(self, positions: np.ndarray) -> torch.Tensor:
        """The uint8 images at ``positions``, on the device."""
        index = torch.as_tensor(positions, dtype=torch.long, device=self.data.device)
        return self.data.index_select(0, index).to(self.device, non_blocking=True)

    def floats(self, positions: np.ndarray, augment: AugmentParams | None = None) -> torch.Tensor:
        """Float NCHW images in [0, 1] at ``positions``, augmented on the device by ``augment`` when given.

        An item may be a bag of K images (``N×K×H×W×3`` data, ``B×K×3×H×W`` out): its parameters are drawn
        once and apply to each of its images, as one slide's stain and lamp apply to all of its cells.
        """
        x = Normalizer.to_float(self.batch(positions))
        if augment is None:
            return x
        if x.ndim == 5:
            b, k = x.shape[:2]
            flat = apply_params(x.flatten(0, 1), augment.repeat_each(k).to(self.device))
            return flat.reshape(b, k, *flat.shape[1:])
        return apply_params(x, augment.to(self.device))
