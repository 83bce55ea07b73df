"""Which images each step sees: shards, orders and static batches as pure functions of seed, epoch and rank."""

from __future__ import annotations

import numpy as np
import pytest

from lablens.train.order import epoch_generator, epoch_order, mix_seed, rank_batches, shard_owner, step_plan


def test_seed_mixing_is_stable_and_distinct() -> None:
    assert mix_seed(0, 1) == mix_seed(0, 1)
    assert len({mix_seed(0, e) for e in range(100)}) == 100


@pytest.mark.parametrize(("n", "world"), [(10, 1), (101, 2), (64, 4), (7, 3)])
def test_shards_are_disjoint_cover_the_data_and_are_balanced(n: int, world: int) -> None:
    owner = shard_owner(n, world, seed=5)
    shards = [set(np.flatnonzero(owner == r)) for r in range(world)]
    assert set().union(*shards) == set(range(n))
    assert sum(len(s) for s in shards) == n  # disjoint
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    np.testing.assert_array_equal(owner, shard_owner(n, world, seed=5))


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_rank_takes_the_same_static_batches_from_its_own_shard(drop_last: bool) -> None:
    n, world, batch = 103, 2, 16
    y = np.arange(n) % 4
    owner = shard_owner(n, world, seed=0)
    plan = step_plan(np.bincount(owner), batch, world, drop_last)
    assert plan.per_rank == 8
    order = epoch_order(y, "weighted", epoch_generator(0, 1))
    seen = []
    for rank in range(world):
        batches = rank_batches(order, owner, rank, plan)
        assert batches.shape == (
            plan.steps,
            plan.per_rank,
        )  # one shape every step: compiled graphs stay valid
        assert set(batches.ravel()) <= set(np.flatnonzero(owner == rank))
        seen.append(set(batches.ravel()))
    if drop_last:
        assert plan.steps == 51 // 8  # full batches of the smaller shard only
        assert all(len(s) == plan.steps * plan.per_rank for s in seen)  # no image twice
    else:
        assert seen[0] | seen[1] == set(range(n))  # every image once at least


def test_orders_are_a_pure_function_of_seed_and_epoch() -> None:
    y = np.arange(50) % 5
    a = epoch_order(y, "weighted", epoch_generator(1, 3))
    b = epoch_order(y, "weighted", epoch_generator(1, 3))
    c = epoch_order(y, "weighted", epoch_generator(1, 4))
    np.testing.assert_array_equal(a, b)
    assert sorted(a) == list(range(50)) and not np.array_equal(a, c)
    balanced = epoch_order(np.array([0] * 45 + [1] * 5), "sampler", epoch_generator(1, 1))
    assert 0.3 < np.mean(balanced >= 45) < 0.7  # the rare class drawn about as often as the common one


def test_too_few_images_for_the_processes_is_explained() -> None:
    with pytest.raises(ValueError, match="at least 4 training images"):
        step_plan(np.array([1, 1, 1, 0]), 8, 4, False)
