"""Boxes → centre-point targets → boxes, exactly, under every flip and rotation of the tile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lablens.fields.centres import TARGET_CHANNELS, centre_loss, centre_targets, decode, dihedral_targets
from lablens.nn.network import dihedral

SIDE = 64
BOXES = [(5, 9, 22, 18), (31, 41, 50, 62)]


def _turn(box: tuple[float, ...], k: int) -> tuple[float, ...]:
    """A box as seen in view ``k`` of ``dihedral`` (quarter turns counter-clockwise, then a mirror)."""
    x0, y0, x1, y1 = box
    for _ in range(k % 4):
        x0, y0, x1, y1 = y0, SIDE - x1, y1, SIDE - x0
    if k >= 4:
        x0, x1 = SIDE - x1, SIDE - x0
    return (x0, y0, x1, y1)


def _perfect_maps(target: np.ndarray) -> np.ndarray:
    """Network outputs that say exactly what the targets say (logit ±8 on the centre map)."""
    maps = target[:5].copy()
    maps[0] = np.where(target[5] > 0, 8.0, -8.0)
    return maps


def test_targets_decode_back_to_the_boxes() -> None:
    target = centre_targets(BOXES, (SIDE, SIDE), 4)
    assert target.shape == (TARGET_CHANNELS, SIDE // 4, SIDE // 4)
    assert target[5].sum() == len(BOXES) and target[0].max() == 1.0
    boxes, scores = decode(_perfect_maps(target), 4, 0.5)
    np.testing.assert_allclose(sorted(boxes.tolist()), sorted(BOXES), atol=1e-4)
    assert (scores > 0.99).all()


@pytest.mark.parametrize("k", range(8))
def test_turned_targets_describe_the_turned_boxes(k: int) -> None:
    image = torch.zeros(1, 1, SIDE, SIDE)
    image[0, 0, 9:18, 5:22] = 1.0
    ys, xs = torch.nonzero(dihedral(image, k)[0, 0], as_tuple=True)
    assert (xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1) == _turn(BOXES[0], k)
    turned = dihedral_targets(torch.from_numpy(centre_targets(BOXES, (SIDE, SIDE), 4))[None], k)[0]
    expected = centre_targets([_turn(b, k) for b in BOXES], (SIDE, SIDE), 4)
    np.testing.assert_allclose(turned.numpy(), expected, atol=1e-5)


def test_a_centre_outside_the_tile_is_left_to_its_neighbour() -> None:
    target = centre_targets([(-20, 5, 4, 20)], (SIDE, SIDE), 4)  # centre at x = -8
    assert target[5].sum() == 0


def test_the_loss_rewards_the_right_answer() -> None:
    target = torch.from_numpy(centre_targets(BOXES, (SIDE, SIDE), 4))[None]
    right = torch.from_numpy(_perfect_maps(target[0].numpy()))[None]
    wrong = right.clone()
    wrong[:, 0] = -right[:, 0]
    assert centre_loss(right, target)["loss"] < 0.05 < centre_loss(wrong, target)["loss"]
    assert centre_loss(right, target)["box"] == pytest.approx(0.0, abs=1e-6)
