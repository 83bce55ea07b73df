"""Synthetic image phantoms: built-in demo and test data with known ground truth.

A :class:`Phantom` (see :mod:`.task`) renders labelled images from a per-group *style* (a
synthetic patient, slide or scanner session: stain, exposure, focus...) and per-image random
parameters. Everything is driven by explicit NumPy generators, so a dataset replays byte for byte::

    from lablens.phantoms import write_phantoms

    df = write_phantoms("blood-cells", "demo-data", n=800, seed=0, size=128)
    # demo-data/<class>/<class>_00000.png ... + demo-data/manifest.csv (path, label, group, truth)

One module per task defines ``TASK``; the table below collects them. ``docs/phantoms/<task>.png``
is ``lablens phantom <task> docs/phantoms/<task>.png --montage``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lablens.phantoms import (
    ana_cyto,
    ana_hep2,
    blood_cells,
    blood_smear,
    kidney_if,
    nailfold,
    neutrophil_inclusions,
)
from lablens.phantoms import contact_sheet as _sheet
from lablens.phantoms import write as _write
from lablens.phantoms.contract import Instance, Phantom, PhantomFields
from lablens.phantoms.write import BLUR_STEP, group_plan, parse_blur_levels
from lablens.registry import Registry

__all__ = [
    "BLUR_STEP",
    "PHANTOMS",
    "Instance",
    "Phantom",
    "PhantomFields",
    "get_task",
    "group_plan",
    "montage",
    "parse_blur_levels",
    "write_phantoms",
]

# One module per task, each defining ``TASK``; whole-field modes kept in their own module (``FIELDS``)
# where the cell module is already large.
PHANTOMS = Registry("phantom task")
for _task in (
    dataclasses.replace(blood_cells.TASK, fields=blood_smear.FIELDS),
    neutrophil_inclusions.TASK,
    ana_hep2.TASK,
    ana_cyto.TASK,
    kidney_if.TASK,
    nailfold.TASK,
):
    PHANTOMS.register(_task.name, value=_task, summary=_task.description)


def get_task(task: str | Phantom) -> Phantom:
    """Look a task up by name (an unknown name is a one-line error naming the closest ones)."""
    return task if isinstance(task, Phantom) else PHANTOMS.value(task)


def write_phantoms(
    task: str | Phantom,
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    size: int | None = None,
    groups: int | None = None,
    blur: str | Sequence[int] | None = None,
    fields: bool = False,
    progress: Any = None,
) -> pd.DataFrame:
    """Write a phantom dataset; see :func:`lablens.phantoms.write.write_phantoms`."""
    return _write.write_phantoms(get_task(task), out_dir, n, seed, size, groups, blur, fields, progress)


def montage(
    task: str | Phantom,
    out_png: str | Path,
    per_class: int = 8,
    seed: int = 0,
    size: int = 96,
    field_size: int | None = None,
    compact: bool = False,
) -> Path:
    """Save a labelled contact sheet; see :func:`lablens.phantoms.contact_sheet.montage`."""
    return _sheet.montage(get_task(task), out_png, per_class, seed, size, field_size, compact)
