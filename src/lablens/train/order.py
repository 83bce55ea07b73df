"""Which images each training step sees: a pure function of (seed, epoch, rank, number of processes).

Random draws are made here, from generators seeded by :func:`mix_seed`, and nowhere else in the engine, so a run
replays exactly: after a resume, in another process, on every rank of a distributed run.

With ``W`` processes every image belongs to one rank (:func:`shard_owner`, fixed for the whole run, so each rank
keeps only its share of the decoded images on its device). Every epoch has one global order
(:func:`epoch_order`); each rank walks through the images it owns in that order, ``batch_size / W`` at a time,
for the same number of steps on every rank (a rank that runs out first starts its order again), so each
optimiser step sees one global batch of ``batch_size`` images as a single process would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lablens.errors import SettingError


def mix_seed(*values: int) -> int:
    """A deterministic 63-bit seed from integers (no Python ``hash``: it is salted per process)."""
    s = np.random.SeedSequence([int(v) % (2**63) for v in values])
    return int(s.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's order and augmentation: the same on every rank and after a resume."""
    return torch.Generator().manual_seed(mix_seed(seed, epoch))


def epoch_order(y: np.ndarray, mode: str, generator: torch.Generator) -> np.ndarray:
    """Sample order for one epoch: a permutation, or (``sampler``) a class-balanced draw with replacement."""
    n = len(y)
    if mode == "sampler":
        counts = np.bincount(y)
        p = 1.0 / counts[y]
        idx = torch.multinomial(
            torch.as_tensor(p, dtype=torch.float64), n, replacement=True, generator=generator
        )
        return idx.numpy()
    return torch.randperm(n, generator=generator).numpy()


def shard_owner(n: int, world_size: int, seed: int) -> np.ndarray:
    """The rank that holds each of ``n`` images: a seeded shuffle dealt round-robin (shares differ by ≤ 1)."""
    owner = np.empty(n, dtype=np.int64)
    perm = np.random.default_rng([seed, 2027]).permutation(n)
    owner[perm] = np.arange(n) % world_size
    return owner


@dataclass(frozen=True)
class StepPlan:
    """``steps`` optimiser steps per pass over the images, each taking ``per_rank`` images on every rank, and
    ``passes`` passes per epoch (more than one when the data is too small for the schedule's fewest steps)."""

    per_rank: int
    steps: int
    passes: int = 1

    @property
    def epoch_steps(self) -> int:
        return self.steps * self.passes


def step_plan(shard_sizes: np.ndarray, batch_size: int, world_size: int, drop_last: bool) -> StepPlan:
    """Steps of an epoch for these shard sizes (the same on every rank, so collective calls stay in step).

    ``drop_last``: only full passes over the smallest shard (no image twice in an epoch); otherwise every image
    of the largest shard is seen, the last batch filled from the start of the order. Batches always have the same
    size, so compiled networks keep static shapes.
    """
    smallest, largest = int(np.min(shard_sizes)), int(np.max(shard_sizes))
    if smallest < 1:
        raise SettingError(f"{world_size} processes need at least {world_size} training images")
    per_rank = min(batch_size // world_size, smallest)
    steps = smallest // per_rank if drop_last else math.ceil(largest / per_rank)
    return StepPlan(per_rank=per_rank, steps=max(1, steps))


def rank_batches(order: np.ndarray, owner: np.ndarray, rank: int, plan: StepPlan) -> np.ndarray:
    """``steps × per_rank`` image indices for ``rank``: its own images in the epoch's order, wrapped around."""
    mine = order[owner[order] == rank]
    if len(mine) == 0:  # a class-balanced draw can miss a tiny shard entirely
        mine = np.flatnonzero(owner == rank)
    need = plan.steps * plan.per_rank
    reps = math.ceil(need / len(mine))
    return np.tile(mine, reps)[:need].reshape(plan.steps, plan.per_rank)


def epoch_batches(
    y: np.ndarray, mode: str, generator: torch.Generator, owner: np.ndarray, rank: int, plan: StepPlan
) -> np.ndarray:
    """``epoch_steps × per_rank`` image indices of one epoch for ``rank``: ``plan.passes`` passes, each in its
    own order drawn from ``generator`` (one pass draws exactly what a single :func:`epoch_order` draws)."""
    passes = [rank_batches(epoch_order(y, mode, generator), owner, rank, plan) for _ in range(plan.passes)]
    return np.concatenate(passes)
