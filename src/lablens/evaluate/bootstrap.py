"""Percentile bootstrap that resamples groups (patients, specimens), not images.

Each replicate draws ``n_groups`` groups uniformly with replacement; every image of a drawn group
comes along, repeated as often as its group was drawn. A replicate is represented by a weight per
image (how many copies of it the replicate contains), so a batch of replicates is a ``(B, N)``
matrix and a statistic evaluates the whole batch with matrix products instead of a Python loop.
Replicates are processed in blocks to bound memory; the random draws do not depend on the block
size.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

DEFAULT_N_BOOT = 1000
DEFAULT_LEVEL = 0.95
#: Upper bound on the number of weight entries (replicates x samples) held in memory at once.
MAX_BLOCK_ELEMENTS = 4_000_000

Statistic = Callable[[np.ndarray], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Interval:
    """Percentile interval of one (possibly array-valued) statistic.

    Attributes:
        lo: Lower bound, NaN where no replicate was usable.
        hi: Upper bound, NaN where no replicate was usable.
        n_used: Number of replicates in which the statistic was defined (not NaN).
    """

    lo: np.ndarray
    hi: np.ndarray
    n_used: np.ndarray


def encode_groups(groups: np.ndarray | list | None, n_samples: int) -> tuple[np.ndarray, int]:
    """Map group labels to integer codes ``0..G-1``.

    Args:
        groups: One label per sample (any hashable, sortable values), or None for one group per
            sample.
        n_samples: Number of samples N.

    Returns:
        ``(codes, n_groups)`` with ``codes`` of shape ``(N,)``.

    Raises:
        ValueError: If the number of labels differs from ``n_samples``.
    """
    if groups is None:
        return np.arange(n_samples, dtype=np.int64), n_samples
    labels = np.asarray(groups)
    if labels.shape != (n_samples,):
        raise ValueError(f"groups must have shape ({n_samples},), got {labels.shape}")
    try:
        uniques, codes = np.unique(labels, return_inverse=True)
    except TypeError:
        uniques, codes = np.unique(labels.astype(str), return_inverse=True)
    return codes.astype(np.int64).reshape(-1), int(uniques.size)


def draw_group_counts(n_groups: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each group is drawn in each replicate.

    Args:
        n_groups: Number of groups G (each replicate draws G groups with replacement).
        n_boot: Number of replicates B.
        rng: Random generator (advanced by ``B * G`` integer draws).

    Returns:
        Int64 array of shape ``(B, G)`` whose rows sum to G.
    """
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    flat = (np.arange(n_boot, dtype=np.int64)[:, None] * n_groups + draws).ravel()
    return np.bincount(flat, minlength=n_boot * n_groups).reshape(n_boot, n_groups)


def replicate_weights(
    group_codes: np.ndarray,
    n_groups: int,
    n_boot: int,
    seed: int | np.random.Generator = 0,
    block_size: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield blocks of per-sample bootstrap weights.

    Args:
        group_codes: Integer group code per sample, shape ``(N,)`` (see :func:`encode_groups`).
        n_groups: Number of groups G.
        n_boot: Total number of replicates B.
        seed: Seed or generator for ``np.random.default_rng``.
        block_size: Replicates per block; by default as many as fit :data:`MAX_BLOCK_ELEMENTS`.

    Yields:
        Float64 arrays of shape ``(b, N)``: the number of copies of each sample in each replicate.
    """
    rng = np.random.default_rng(seed)
    n_samples = group_codes.shape[0]
    if block_size is None:
        block_size = max(1, MAX_BLOCK_ELEMENTS // max(1, n_samples))
    done = 0
    while done < n_boot:
        b = min(block_size, n_boot - done)
        counts = draw_group_counts(n_groups, b, rng)
        yield counts[:, group_codes].astype(np.float64)
        done += b


def group_bootstrap_indices(
    groups: np.ndarray | list | None,
    n_samples: int,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int | np.random.Generator = 0,
) -> Iterator[np.ndarray]:
    """Yield the sample index array of each replicate (same draws as :func:`bootstrap_replicates`).

    Args:
        groups: Group label per sample, or None for one group per sample.
        n_samples: Number of samples N.
        n_boot: Number of replicates.
        seed: Seed or generator.

    Yields:
        Int64 index arrays into the original samples; a sample appears once per draw of its group.
    """
    codes, n_groups = encode_groups(groups, n_samples)
    index = np.arange(n_samples)
    for block in replicate_weights(codes, n_groups, n_boot, seed):
        for row in block:
            yield np.repeat(index, row.astype(np.int64))


def bootstrap_replicates(
    statistic: Statistic,
    groups: np.ndarray | list | None,
    n_samples: int,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int | np.random.Generator = 0,
    block_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Evaluate a batched statistic on group-bootstrap replicates.

    Args:
        statistic: Function mapping weights ``(b, N)`` to a dict of arrays whose first axis has
            length b; NaN marks a value undefined in that replicate.
        groups: Group label per sample, or None for one group per sample.
        n_samples: Number of samples N.
        n_boot: Number of replicates B.
        seed: Seed or generator.
        block_size: Replicates evaluated per call of ``statistic`` (default: memory bound).

    Returns:
        Dict of arrays of shape ``(B, ...)``; empty when ``n_boot`` is 0.
    """
    codes, n_groups = encode_groups(groups, n_samples)
    blocks: dict[str, list[np.ndarray]] = {}
    for weights in replicate_weights(codes, n_groups, n_boot, seed, block_size):
        for name, values in statistic(weights).items():
            blocks.setdefault(name, []).append(np.asarray(values, dtype=np.float64))
    return {name: np.concatenate(parts, axis=0) for name, parts in blocks.items()}


def percentile_interval(replicates: np.ndarray, level: float = DEFAULT_LEVEL) -> Interval:
    """Percentile interval along axis 0, ignoring NaN (undefined) replicates.

    Args:
        replicates: Array of shape ``(B, ...)``.
        level: Coverage, e.g. 0.95 for the 2.5th and 97.5th percentiles.

    Returns:
        :class:`Interval` with arrays of shape ``(...)``.

    Raises:
        ValueError: If ``level`` is not in (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    values = np.asarray(replicates, dtype=np.float64)
    n_used = np.sum(~np.isnan(values), axis=0)
    if values.shape[0] == 0:
        empty = np.full(values.shape[1:], np.nan)
        return Interval(empty, empty.copy(), n_used)
    tail = (1.0 - level) / 2.0 * 100.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(values, [tail, 100.0 - tail], axis=0)
    return Interval(np.asarray(lo), np.asarray(hi), n_used)


def group_bootstrap(
    statistic: Statistic,
    groups: np.ndarray | list | None,
    n_samples: int,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
    seed: int | np.random.Generator = 0,
) -> dict[str, Interval]:
    """Percentile confidence intervals of a batched statistic under group resampling.

    Args:
        statistic: See :func:`bootstrap_replicates`.
        groups: Group label per sample, or None for one group per sample.
        n_samples: Number of samples N.
        n_boot: Number of replicates.
        level: Interval coverage.
        seed: Seed or generator.

    Returns:
        One :class:`Interval` per statistic name (empty dict when ``n_boot`` is 0).
    """
    replicates = bootstrap_replicates(statistic, groups, n_samples, n_boot, seed)
    return {name: percentile_interval(values, level) for name, values in replicates.items()}


def ci_entry(
    value: float | None,
    interval: Interval | None,
    index: tuple[int, ...] = (),
    n_boot: int = 0,
) -> dict:
    """JSON-ready ``{"value", "ci"}`` entry for one statistic.

    Args:
        value: Point estimate; None or NaN when undefined.
        interval: Bootstrap interval of the statistic (None when not bootstrapped).
        index: Position within an array-valued interval (e.g. ``(class_index,)``).
        n_boot: Replicates requested; when fewer were usable, the entry gains ``"replicates"``
            with the number used.

    Returns:
        ``{"value": float | None, "ci": [lo, hi] | None}`` plus ``"replicates"`` when some
        replicates were skipped. The CI is None when the value is undefined or no replicate was
        usable.
    """
    point = None if value is None or not np.isfinite(value) else float(value)
    entry: dict = {"value": point, "ci": None}
    if interval is None or point is None:
        return entry
    used = int(interval.n_used[index])
    if used > 0:
        entry["ci"] = [float(interval.lo[index]), float(interval.hi[index])]
    if used < n_boot:
        entry["replicates"] = used
    return entry
