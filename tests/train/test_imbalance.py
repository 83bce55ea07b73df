from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lablens.train.imbalance import ClassificationLoss, balanced_class_weights
from lablens.train.order import epoch_order


def test_balanced_weights() -> None:
    y = np.array([0] * 8 + [1] * 2)
    w = balanced_class_weights(y, 3)
    np.testing.assert_allclose(w, [10 / 16, 10 / 4, 0.0])


def test_sampler_balances_classes() -> None:
    y = np.array([0] * 900 + [1] * 100)
    order = epoch_order(y, "sampler", torch.Generator().manual_seed(0))
    share = (y[order] == 1).mean()
    assert 0.45 < share < 0.55 and len(order) == len(y)


def test_permutation_otherwise() -> None:
    y = np.arange(50) % 3
    order = epoch_order(y, "weighted", torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(np.sort(order), np.arange(50))


def test_focal_loss_reduces_to_ce_at_gamma_zero() -> None:
    logits = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    target = torch.arange(16) % 4
    focal = ClassificationLoss("focal", focal_gamma=0.0)(logits, target)
    torch.testing.assert_close(focal, F.cross_entropy(logits, target))
    assert ClassificationLoss("focal", focal_gamma=2.0)(logits, target) < focal


def test_weighted_loss_uses_weights() -> None:
    logits = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    w = np.array([0.5, 2.0])
    got = ClassificationLoss("weighted", class_weights=w)(logits, target)
    torch.testing.assert_close(
        got, F.cross_entropy(logits, target, weight=torch.tensor(w, dtype=torch.float32))
    )


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown imbalance"):
        ClassificationLoss("magic")
