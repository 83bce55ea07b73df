"""What to label next (active learning): rank unlabelled images by how much a technician's label would teach.

The rule (``lablens suggest``), in three steps:

1. **uncertainty** of the bundle's calibrated probabilities, in [0, 1] with 1 the most uncertain: ``margin``
   (1 − (top-1 − top-2), the default) or ``entropy`` (normalised by log K);
2. **a candidate pool**: the ``pool_factor × n`` most uncertain eligible images (not labelled, not suggested
   before, not out of distribution);
3. **diversity**: k-center greedy (Sener & Savarese, "Active learning for convolutional neural networks: a core-set
   approach", ICLR 2018) on the pool's embeddings (standardised, unit length): each pick is the candidate
   farthest from everything labelled, suggested or picked so far, so a batch covers the pool instead of being
   ``n`` copies of one hard cell. The first pick, when nothing is labelled yet, is the most uncertain one.

Ties are broken by a seeded permutation, so a batch is a pure function of (probabilities, embeddings, what is
excluded, seed). ``random`` (a seeded draw among the eligible) is the baseline a learning curve compares with.

Written here rather than taken from scikit-activeml (``UncertaintySampling``, ``CoreSet``) or baal: those query a
classifier object they fit themselves (scikit-activeml) or run Monte-Carlo dropout loops on a torch model (baal),
whereas a lab's bundle gives calibrated probabilities, embeddings and an OOD verdict once per image; the rule
on those arrays is the few lines below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lablens.errors import SettingError

RULES = ("margin", "entropy", "random")


def uncertainty(proba: np.ndarray, rule: str = "margin") -> np.ndarray:
    """Per row, how uncertain the calibrated probabilities are, in [0, 1] (1: the most uncertain)."""
    proba = np.asarray(proba, dtype=np.float64)
    if rule == "margin":
        top = np.sort(proba, axis=1)[:, ::-1]
        second = top[:, 1] if proba.shape[1] > 1 else np.zeros(len(proba))
        return 1.0 - (top[:, 0] - second)
    if rule == "entropy":
        p = np.clip(proba, 1e-12, 1.0)
        return -(p * np.log(p)).sum(axis=1) / np.log(max(proba.shape[1], 2))
    raise SettingError(f"acquisition rule {rule!r}: choose one of {', '.join(RULES)}")


def unit_embeddings(emb: np.ndarray) -> np.ndarray:
    """Embeddings standardised per dimension (constant dimensions left at 0) and scaled to unit length."""
    emb = np.asarray(emb, dtype=np.float64)
    sd = emb.std(axis=0)
    z = (emb - emb.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def k_center_greedy(
    emb: np.ndarray, candidates: np.ndarray, n: int, centres: np.ndarray, first: int | None = None
) -> list[int]:
    """``n`` rows of ``candidates`` picked one at a time, each the farthest (Euclidean) from ``centres`` and the
    picks before it; ``first`` is picked first when there are no centres. Candidates come in tie-break order."""
    picked: list[int] = []
    if len(candidates) == 0 or n <= 0:
        return picked
    sq = (emb**2).sum(axis=1)
    dist = np.full(len(candidates), np.inf)
    for start in range(0, len(centres), 4096):  # squared distances by one product per chunk of centres
        c = centres[start : start + 4096]
        d = sq[candidates, None] + sq[None, c] - 2.0 * emb[candidates] @ emb[c].T
        dist = np.minimum(dist, d.min(axis=1))
    while len(picked) < min(n, len(candidates)):
        if not len(centres) and not picked and first is not None:
            j = int(np.flatnonzero(candidates == first)[0])
        else:
            j = int(np.argmax(dist))  # the first maximum: candidates' order breaks ties
        picked.append(int(candidates[j]))
        dist = np.minimum(
            dist, sq[candidates] + sq[candidates[j]] - 2.0 * emb[candidates] @ emb[candidates[j]]
        )
        dist[j] = -np.inf
    return picked


@dataclass(frozen=True)
class Suggestion:
    """A batch: the rows picked, in order, and every row's uncertainty (NaN for the ``random`` rule)."""

    rows: list[int]
    uncertainty: np.ndarray


def suggest_rows(
    proba: np.ndarray,
    emb: np.ndarray,
    eligible: np.ndarray,
    labelled: np.ndarray,
    n: int,
    *,
    rule: str = "margin",
    pool_factor: float = 10.0,
    seed: int = 0,
) -> Suggestion:
    """The next ``n`` rows to label (see the module docstring).

    Args:
        proba: ``N×K`` calibrated probabilities; emb: ``N×D`` embeddings of the same rows.
        eligible: boolean per row: may be suggested (not labelled, not suggested before, not out of distribution).
        labelled: boolean per row: already labelled or suggested (the centres diversity starts from).
    """
    if rule not in RULES:
        raise SettingError(f"acquisition rule {rule!r}: choose one of {', '.join(RULES)}")
    if pool_factor < 1:
        raise SettingError(
            f"pool_factor {pool_factor}: give at least 1 (the pool holds pool_factor × n images)"
        )
    rng = np.random.default_rng([int(seed), 2032])
    order = rng.permutation(len(proba))  # the tie-break order
    order = order[np.asarray(eligible, dtype=bool)[order]]
    if rule == "random":
        return Suggestion([int(i) for i in order[:n]], np.full(len(proba), np.nan))
    u = uncertainty(proba, rule)
    ranked = order[np.argsort(-u[order], kind="stable")]
    pool = ranked[: max(n, int(np.ceil(pool_factor * n)))]
    unit = unit_embeddings(emb)
    centres = np.flatnonzero(np.asarray(labelled, dtype=bool))
    picked = k_center_greedy(unit, pool, n, centres, first=int(ranked[0]) if len(ranked) else None)
    return Suggestion(picked, u)


def mean_pairwise_distance(emb: np.ndarray) -> float:
    """Mean Euclidean distance between distinct rows (how spread a batch is)."""
    if len(emb) < 2:
        return 0.0
    d = np.sqrt(((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1))
    return float(d[np.triu_indices(len(emb), 1)].mean())
