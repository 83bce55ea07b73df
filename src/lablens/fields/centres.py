"""Boxes ↔ centre-point maps, the training targets and the read-out of a :class:`~lablens.models.centre_net.CentreNet`.

Deterministic array code only: the training task (:mod:`lablens.fields.centre_task`) draws its augmentations
elsewhere. Boxes are ``(x0, y0, x1, y1)`` in input pixels; maps have one cell per ``stride`` pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lablens.nn.network import dihedral

#: target channels: centre heat (a Gaussian per object, 1 at its centre cell), log width, log height,
#: offset x, offset y, and the mask of centre cells where size and offset are taught
TARGET_CHANNELS = 6
#: Gaussian spread of an object's centre heat, as a fraction of its shorter side
SIGMA_FRACTION = 0.15


def centre_targets(boxes: Sequence[Sequence[float]], shape: tuple[int, int], stride: int) -> np.ndarray:
    """``6×(H/stride)×(W/stride)`` float32 targets of the boxes on an ``H×W`` input (see ``TARGET_CHANNELS``)."""
    h, w = shape[0] // stride, shape[1] // stride
    out = np.zeros((TARGET_CHANNELS, h, w), np.float32)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    for x0, y0, x1, y1 in boxes:
        cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride
        bw, bh = max((x1 - x0) / stride, 1e-3), max((y1 - y0) / stride, 1e-3)
        ix, iy = int(cx), int(cy)
        if not (0 <= ix < w and 0 <= iy < h):
            continue  # the centre lies outside this input (a tile's neighbour)
        sigma = max(0.5, SIGMA_FRACTION * min(bw, bh))
        out[0] = np.maximum(out[0], np.exp(-((xx - cx + 0.5) ** 2 + (yy - cy + 0.5) ** 2) / (2 * sigma**2)))
        out[0, iy, ix] = 1.0
        out[1:5, iy, ix] = (np.log(bw), np.log(bh), cx - ix - 0.5, cy - iy - 0.5)
        out[5, iy, ix] = 1.0
    return out


def dihedral_targets(target: torch.Tensor, k: int) -> torch.Tensor:
    """``B×6×h×w`` targets seen through view ``k`` of :func:`lablens.nn.network.dihedral` (``k % 4`` quarter
    turns, then a horizontal flip when ``k >= 4``), so that they describe the boxes of the turned images: sizes
    swap on odd turns, offsets turn and flip with the image."""
    t = dihedral(target, k)
    for _ in range(k % 4):  # one turn maps an offset (dx, dy) to (dy, -dx)
        t = t[:, [0, 2, 1, 4, 3, 5]] * t.new_tensor([1, 1, 1, 1, -1, 1])[:, None, None]
    if k >= 4:
        t = t * t.new_tensor([1, 1, 1, -1, 1, 1])[:, None, None]
    return t


def centre_loss(out: torch.Tensor, target: torch.Tensor, size_weight: float = 0.1) -> dict[str, torch.Tensor]:
    """CenterNet's loss: penalty-reduced focal loss on the centre heat, L1 on size and offset at centres."""
    p = out[:, 0].float().sigmoid().clamp(1e-4, 1 - 1e-4)
    heat, at_centre = target[:, 0], target[:, 5]
    n = at_centre.sum().clamp(min=1.0)
    focal = (
        -(
            torch.log(p) * (1 - p) ** 2 * at_centre
            + torch.log(1 - p) * p**2 * (1 - heat) ** 4 * (1 - at_centre)
        ).sum()
        / n
    )
    box = (F.l1_loss(out[:, 1:5].float(), target[:, 1:5], reduction="none") * at_centre[:, None]).sum() / n
    return {"loss": focal + size_weight * box, "heat": focal.detach(), "box": box.detach()}


def decode(
    maps: np.ndarray, stride: int, threshold: float, max_objects: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes N×4 in input pixels, scores N)`` from one ``5×h×w`` output: each local maximum (3×3) of the
    centre probability at or above ``threshold`` is an object, best first."""
    t = torch.as_tensor(maps, dtype=torch.float32)
    heat = t[0].sigmoid()
    peak = (F.max_pool2d(heat[None, None], 3, 1, 1)[0, 0] == heat) & (heat >= threshold)
    ys, xs = torch.nonzero(peak, as_tuple=True)
    scores = heat[ys, xs]
    order = torch.argsort(scores, descending=True)[:max_objects]
    ys, xs, scores = ys[order], xs[order], scores[order]
    w, h = t[1, ys, xs].exp(), t[2, ys, xs].exp()
    cx, cy = xs + 0.5 + t[3, ys, xs], ys + 0.5 + t[4, ys, xs]
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1) * stride
    return boxes.numpy(), scores.numpy()
