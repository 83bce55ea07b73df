"""Running a torch network over uint8 image arrays: normalisation, test-time augmentation, batching.

One function, :func:`run_network`, serves validation inside training, every deep estimator's predictions and
the blur studies. A network may return a tensor (logits) or a dict of named outputs (the multi-task model's
``logits``, ``level``, ``residual``); outputs keep their names. With ``tta`` each batch is seen in its 8
flips/rotations: scores are averaged, and image-shaped outputs are turned back before averaging. With
``tta_margin`` as well (adaptive TTA) each image is first seen once, and only the images whose top-1 minus
top-2 softmax probability is below the margin are seen in all 8 views; the number of views each row got is
returned as the ``tta_views`` output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from lablens.device import autocast
from lablens.nn.tta import escalated as tta_escalated

Prepare = Callable[[torch.Tensor, np.ndarray], torch.Tensor]
Collect = Callable[[torch.Tensor, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


class Normalizer:
    """uint8 NHWC → float NCHW in [0, 1] → normalised by the network's mean and std."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels_last: bool = False) -> None:
        self.mean = torch.tensor(tuple(mean), dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(tuple(std), dtype=torch.float32).view(1, 3, 1, 1)
        self.channels_last = channels_last

    @staticmethod
    def to_float(xb: torch.Tensor) -> torch.Tensor:
        """uint8 ``…HWC`` → float ``…CHW`` in [0, 1] (NHWC images, or ``N×K×H×W×C`` bags of K cells)."""
        return xb.movedim(-1, -3).float().div_(255.0)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean.device != x.device:
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        x = (x - self.mean) / self.std
        if self.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x.contiguous()


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 flips/rotations of a square batch (k = 0 is the identity)."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


def undo_dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`dihedral`: ``undo_dihedral(dihedral(x, k), k) == x``."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, -(k % 4), dims=(-2, -1))


def _as_dict(out: Any) -> dict[str, torch.Tensor]:
    return out if isinstance(out, dict) else {"logits": out}


def escalated(logits: torch.Tensor, margin: float) -> torch.Tensor:
    """Adaptive TTA's test (:func:`lablens.nn.tta.escalated`, the one rule) on a batch of logits on any device."""
    rows = tta_escalated(logits.detach().float().cpu().numpy(), margin)
    return torch.from_numpy(rows).to(logits.device)


def _view_sums(
    net: torch.nn.Module, norm: Normalizer, x: torch.Tensor, views: range, device: torch.device, amp: bool
) -> dict[str, torch.Tensor]:
    sums: dict[str, torch.Tensor] = {}
    for k in views:
        with autocast(device, amp):
            out = _as_dict(net(norm.normalize(dihedral(x, k))))
        for name, value in out.items():
            value = value.float()
            if value.ndim == 4 and value.shape[-2:] == x.shape[-2:]:
                value = undo_dihedral(value, k)  # an image-shaped output turns back with its view
            sums[name] = sums[name] + value if name in sums else value
    return sums


def _mean_of_views(
    net: torch.nn.Module, norm: Normalizer, x: torch.Tensor, views: range, device: torch.device, amp: bool
) -> dict[str, torch.Tensor]:
    return {name: value / len(views) for name, value in _view_sums(net, norm, x, views, device, amp).items()}


def _adaptive_views(
    net: torch.nn.Module, norm: Normalizer, x: torch.Tensor, device: torch.device, amp: bool, margin: float
) -> dict[str, torch.Tensor]:
    """View 0 for every row; the mean of all 8 views for the rows :func:`escalated` picks."""
    first = _view_sums(net, norm, x, range(1), device, amp)
    esc = escalated(first["logits"], margin)
    views = torch.ones(len(x), dtype=torch.float32, device=first["logits"].device)
    if bool(esc.any()):
        rest = _view_sums(net, norm, x[esc], range(1, 8), device, amp)
        for name, value in rest.items():
            first[name][esc] = (first[name][esc] + value) / 8
        views[esc] = 8
    return {**first, "tta_views": views}


@torch.no_grad()
def run_network(
    net: torch.nn.Module,
    images: np.ndarray,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    batch_size: int = 64,
    channels_last: bool = False,
    amp: bool = True,
    tta: bool = False,
    tta_margin: float | None = None,
    prepare: Prepare | None = None,
    collect: Collect | None = None,
    indices: np.ndarray | None = None,
    pad_batches: bool = False,
    progress_task: Any = None,
) -> dict[str, np.ndarray]:
    """Every output of ``net`` (float32 arrays, rows in input order) for uint8 NHWC ``images``.

    Args:
        prepare: ``(x in [0, 1], row indices) → x`` applied to each batch before normalisation (e.g. the
            degradation protocol of a blur study); ``indices`` are the rows' numbers passed to it (default
            ``0..N-1``).
        collect: ``(prepared x, outputs) → outputs`` run after TTA averaging, e.g. to turn a residual into a
            restored image.
        pad_batches: fill the last batch up to ``batch_size`` (static shapes for compiled networks); the
            padding rows are dropped from the result.
        tta_margin: with ``tta``, all 8 views only for rows whose single-view top-1 minus top-2 softmax
            probability is below it (see :func:`escalated`); rows above it keep their single view.
    """
    net.eval()
    norm = Normalizer(mean, std, channels_last)
    rows = np.arange(len(images)) if indices is None else np.asarray(indices)
    chunks: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(images), batch_size):
        xb = torch.from_numpy(np.array(images[start : start + batch_size]))  # a copy: caches are read-only
        n = len(xb)
        if pad_batches and n < batch_size:
            xb = torch.cat([xb, xb[-1:].expand(batch_size - n, *xb.shape[1:])])
        x = norm.to_float(xb.to(device))
        if prepare is not None:
            idx = rows[start : start + n]
            x = prepare(x, np.concatenate([idx, np.repeat(idx[-1:], len(x) - n)]))
        if tta and tta_margin is not None:
            outputs = _adaptive_views(net, norm, x, device, amp, tta_margin)
        else:
            outputs = _mean_of_views(net, norm, x, range(8) if tta else range(1), device, amp)
        if collect is not None:
            outputs = collect(x, outputs)
        for name, value in outputs.items():
            chunks.setdefault(name, []).append(value[:n].cpu())
        if progress_task is not None:
            progress_task.advance(n)
    if not chunks:
        return {"logits": np.zeros((0, 0), dtype=np.float32)}
    return {name: torch.cat(parts).numpy() for name, parts in chunks.items()}
