"""The output folder of a run, handled one way by every workflow.

A run writes into a new (or empty) folder and never into one that holds something: nothing a user has is
overwritten. The folder is created before the work starts, gets the resolved configuration (``config.yaml``)
when there is one, and is removed again if the run fails before it produced anything worth keeping — for a
resumable training run, its checkpoints are worth keeping.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lablens.config import RunConfig, dump_config, load_config
from lablens.errors import RunError

CONFIG = "config.yaml"


def has_checkpoints(out: Path, *patterns: str) -> bool:
    """Whether a run folder holds what a resume continues from: weights, or files matching ``patterns``."""
    return any(any(out.rglob(p)) for p in ("*.safetensors", *patterns))


def check_new_folder(out: Path, hint: str = "choose a new --out") -> None:
    """Refuse a folder that exists with something in it (a file in its place included)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"{out} exists and is not empty; {hint} (nothing is overwritten)")


@contextmanager
def run_folder(
    out: str | Path,
    config: RunConfig | None = None,
    *,
    keep: Callable[[Path], bool] | None = None,
    hint: str = "choose a new --out",
) -> Iterator[Path]:
    """Create ``out`` (new or empty), write ``config.yaml``, and remove ``out`` again if the body fails.

    ``keep(out)`` → True keeps a failed run's folder (e.g. it holds checkpoints a resume can continue from).
    """
    out = Path(out)
    check_new_folder(out, hint)
    out.mkdir(parents=True, exist_ok=True)
    try:
        if config is not None:
            dump_config(config, out / CONFIG)
        yield out
    except BaseException:
        if keep is None or not keep(out):
            shutil.rmtree(out, ignore_errors=True)
        raise


def resumed_config(out: str | Path) -> RunConfig:
    """The configuration an interrupted run in ``out`` was started with."""
    saved = Path(out) / CONFIG
    if not saved.is_file():
        raise RunError(f"cannot resume: {out} holds no {CONFIG} from an earlier run")
    return load_config(saved)
