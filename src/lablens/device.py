"""Where tensors live and in which precision: device resolution and mixed precision, for training and inference.

Kept apart from training so that prediction, feature extraction and export never import the training engine.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

from lablens.errors import LablensError


class DeviceError(LablensError, RuntimeError):
    """A device was asked for that this machine does not have; the message names it."""


def resolve_device(spec: str = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise a torch device string, checked.

    ``local_rank`` (one process per GPU under torchrun) picks that process's GPU for ``auto`` and ``cuda``.
    """
    spec = (spec or "auto").strip()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(spec)
    except RuntimeError as exc:
        raise DeviceError(f"device {spec!r} is not a device name (auto, cpu, cuda, cuda:1 …)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} asked for, but CUDA is not available on this machine")
        if local_rank is not None:
            if dev.index is not None:
                raise DeviceError(
                    f"device {spec!r} names one GPU, but several processes share this machine; give cuda or "
                    "auto and each process takes the GPU of its local rank"
                )
            dev = torch.device("cuda", local_rank)
        if (dev.index or 0) >= torch.cuda.device_count():
            raise DeviceError(
                f"device {dev} asked for, but this machine has {torch.cuda.device_count()} GPU(s)"
            )
    return dev


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager:
    """Mixed precision on CUDA (bfloat16 where supported, else float16); full precision elsewhere."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def needs_grad_scaler(device: torch.device, amp: bool) -> bool:
    """float16 autocast (CUDA without bfloat16) needs loss scaling so small gradients do not underflow."""
    return amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
