"""Runtime context of a fit: what changes where and how a model trains, never what it learns.

Passed to ``fit(..., context=FitContext(...))`` by the workflows, never stored as a hyper-parameter, so an
estimator's parameters describe the model alone (``clone`` and bundles see only those).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lablens.progress import SilentProgress
from lablens.train.distributed import SINGLE, DistEnv


@dataclass
class FitContext:
    """Where and how a fit runs.

    Attributes:
        progress: a :mod:`lablens.progress` sink (bars and per-epoch lines).
        checkpoint_dir: folder for per-epoch checkpoints (resumable families); None keeps none.
        resume: continue from the last checkpoint in ``checkpoint_dir``.
        device: ``auto``, ``cpu``, ``cuda`` (each process of a distributed run takes its local GPU).
        threads: CPU threads for torch and the classical libraries (None: their defaults).
        eval_batch_size: images per batch when predicting (validation inside training included).
        dist: this process's place in a distributed run (torchrun); a single process by default.
    """

    progress: Any = field(default_factory=SilentProgress)
    checkpoint_dir: Path | None = None
    resume: bool = False
    device: str = "auto"
    threads: int | None = None
    eval_batch_size: int = 64
    dist: DistEnv = SINGLE
