"""The schedule in optimiser steps: a floor of steps reached by more passes per epoch, one pass as before."""

from __future__ import annotations

import numpy as np

from lablens.config import DEFAULT_EPOCHS, DEFAULT_MIN_STEPS, TrainingSettings
from lablens.models.registry import create_estimator
from lablens.train.context import FitContext
from lablens.train.order import (
    StepPlan,
    epoch_batches,
    epoch_generator,
    epoch_order,
    rank_batches,
    shard_owner,
)

from conftest import shape_image


def test_the_floor_applies_by_default_and_not_when_only_epochs_are_given() -> None:
    assert (TrainingSettings().epoch_count, TrainingSettings().step_floor) == (
        DEFAULT_EPOCHS,
        DEFAULT_MIN_STEPS,
    )
    assert (TrainingSettings(epochs=5).epoch_count, TrainingSettings(epochs=5).step_floor) == (5, 0)
    assert TrainingSettings(epochs=5, min_steps=50).step_floor == 50


def test_one_pass_draws_exactly_the_old_order_and_more_passes_each_cover_every_image() -> None:
    y = np.arange(12) % 3
    owner = shard_owner(12, 1, seed=0)
    one = epoch_batches(y, "weighted", epoch_generator(0, 1), owner, 0, StepPlan(4, 3, 1))
    old = rank_batches(epoch_order(y, "weighted", epoch_generator(0, 1)), owner, 0, StepPlan(4, 3))
    np.testing.assert_array_equal(one, old)
    three = epoch_batches(y, "weighted", epoch_generator(0, 1), owner, 0, StepPlan(4, 3, 3))
    assert three.shape == (9, 4)
    np.testing.assert_array_equal(three[:3], old)
    for p in range(3):
        assert sorted(three[3 * p : 3 * p + 3].ravel()) == list(range(12))
    assert not np.array_equal(three[3:6], three[:3])  # each pass its own order


def test_a_small_set_gets_the_steps_it_needs_and_says_so() -> None:
    rng = np.random.default_rng(0)
    y = np.array(["disc", "ring", "square"] * 4)
    X = np.stack([shape_image(c, rng, 32) for c in y])
    est = create_estimator(
        "test_resnet", image_size=32, epochs=2, min_steps=12, batch_size=4, augment=None, patience=None
    ).fit(X, y, context=FitContext(device="cpu"))
    # 12 images in batches of 4: 3 steps a pass; 12 steps over 2 epochs need 2 passes per epoch
    assert (est.steps_, est.passes_) == (12, 2) and [h["steps"] for h in est.history_] == [6, 6]
