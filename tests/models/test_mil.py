"""Multiple-instance learning: bag drawing, the pooling network, and a model that finds the cells that matter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lablens.models.mil import check_bags, training_bags
from lablens.models.mil_net import MILNet
from lablens.models.registry import create_estimator
from lablens.train.context import FitContext

from conftest import shape_image


def test_training_bags_are_a_pure_function_of_the_seed() -> None:
    bags = [np.full((n, 8, 8, 3), i, np.uint8) for i, n in enumerate((3, 10, 1))]
    items, labels, owner = training_bags(bags, np.array([0, 1, 0]), 4, 2, seed=5)
    assert items.shape == (6, 4, 8, 8, 3) and labels.tolist() == [0, 0, 1, 1, 0, 0]
    assert owner.tolist() == [0, 0, 1, 1, 2, 2]
    assert all((items[k] == owner[k]).all() for k in range(6))  # every cell comes from its own sample
    again, _, _ = training_bags(bags, np.array([0, 1, 0]), 4, 2, seed=5)
    np.testing.assert_array_equal(items, again)


def test_check_bags_names_the_bad_bag() -> None:
    good = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"X\[1\]: a bag must be a non-empty"):
        check_bags([good, np.zeros((0, 8, 8, 3), np.uint8)])
    with pytest.raises(ValueError, match=r"X\[1\]: cell crops of \(9, 9\) px"):
        check_bags([good, np.zeros((1, 9, 9, 3), np.uint8)])


@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_pooling_weights_sum_to_one_and_ignore_cell_order(pooling: str) -> None:
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 6))
    net = MILNet(encoder, 6, 3, pooling).eval()
    x = torch.rand(2, 5, 3, 4, 4)
    out = net(x)
    assert out["logits"].shape == (2, 3) and out["cell_logits"].shape == (2, 5, 3)
    torch.testing.assert_close(out["attention"].sum(1), torch.ones(2))
    perm = torch.randperm(5)
    torch.testing.assert_close(net(x[:, perm])["logits"], out["logits"], rtol=1e-5, atol=1e-6)
    if pooling == "mean":
        torch.testing.assert_close(out["attention"], torch.full((2, 5), 0.2))


def _bags(n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """Positive samples hold 2 discs among 6 squares; negative samples hold squares only."""
    bags, labels = [], []
    for i in range(n):
        positive = i % 2 == 0
        cells = [shape_image("square", rng, 32) for _ in range(6)]
        if positive:
            cells[1] = shape_image("disc", rng, 32)
            cells[4] = shape_image("disc", rng, 32)
        bags.append(np.stack(cells))
        labels.append("positive" if positive else "negative")
    return bags, np.array(labels)


@pytest.mark.slow
def test_attention_finds_the_cells_that_carry_the_label() -> None:
    rng = np.random.default_rng(0)
    X, y = _bags(40, rng)
    Xt, yt = _bags(12, np.random.default_rng(1))
    est = create_estimator(
        "mil",
        model_name="test_resnet",
        image_size=32,
        epochs=6,
        batch_size=8,
        cells_per_bag=6,
        bags_per_sample=2,
        lr=3e-3,
        patience=None,
        augment=None,
    )
    est.fit(X, y, Xt[:4], yt[:4], context=FitContext(device="cpu"))
    assert (est.predict(Xt) == yt).mean() >= 0.9
    outs = est.bag_outputs([b for b, label in zip(Xt, yt, strict=True) if label == "positive"], device="cpu")
    on_discs = np.mean([o["attention"][[1, 4]].sum() for o in outs])
    assert on_discs > 2 / 6 + 0.15  # more than the discs' share of the cells
