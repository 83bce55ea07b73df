"""Synthetic image phantoms: built-in demo and test data with known ground truth.

A :class:`PhantomTask` renders labelled images from a per-group *style* (a synthetic patient, slide
or scanner session: stain, exposure, focus...) and per-image random parameters. Everything is
driven by explicit NumPy generators, so a dataset replays byte for byte::

    from lablens.data.phantoms import PHANTOM_TASKS, write_phantoms

    df = write_phantoms("blood-cells", "demo-data", n=800, seed=0, size=128)
    # demo-data/<class>/<class>_00000.png ... + demo-data/manifest.csv (path, label, group, truth)

Seeding convention: image ``index`` uses ``np.random.default_rng([seed, index])`` and group ``g``
uses ``np.random.default_rng([seed, 7919, g])`` for its style.

``docs/phantoms/blood-cells.png`` is ``montage("blood-cells", path, per_class=8, seed=0, size=96)``
re-saved as a 256-colour palette PNG (PIL ``Quantize.MAXCOVERAGE``, no dither) to keep it small.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from lablens.data.phantoms import blood_cells

__all__ = ["PHANTOM_TASKS", "PhantomTask", "group_plan", "montage", "write_phantoms"]

_STYLE_SALT = 7919


@dataclass(frozen=True)
class PhantomTask:
    """A synthetic image classification task.

    Attributes:
        name: task name used on the command line (e.g. ``"blood-cells"``).
        classes: class labels, in canonical order.
        description: one-line description.
        style_sampler: ``rng -> style dict`` (per group).
        param_sampler: ``(label, rng, style) -> params dict`` (per image, all randomness).
        drawer: ``(params, size) -> uint8 RGB image`` (deterministic).
        truth_fn: ``(params, size) -> dict`` of scalar per-image truth for the manifest.
    """

    name: str
    classes: tuple[str, ...]
    description: str
    style_sampler: Callable[[np.random.Generator], dict[str, float]]
    param_sampler: Callable[[str, np.random.Generator, dict[str, float]], dict[str, Any]]
    drawer: Callable[[dict[str, Any], int], np.ndarray]
    truth_fn: Callable[[dict[str, Any], int], dict[str, Any]]

    def sample_style(self, rng: np.random.Generator) -> dict[str, float]:
        """Sample the per-group style (stain, exposure, focus blur...)."""
        return self.style_sampler(rng)

    def render_with_truth(
        self, label: str, rng: np.random.Generator, size: int = 128, style: dict[str, float] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Render one image and return it with its per-image truth."""
        if label not in self.classes:
            raise ValueError(
                f"unknown class {label!r} for task {self.name!r}; expected one of {self.classes}"
            )
        if style is None:
            style = self.sample_style(rng)
        params = self.param_sampler(label, rng, style)
        return self.drawer(params, size), self.truth_fn(params, size)

    def render(
        self, label: str, rng: np.random.Generator, size: int = 128, style: dict[str, float] | None = None
    ) -> np.ndarray:
        """Render one ``uint8`` RGB image of shape ``(size, size, 3)``."""
        return self.render_with_truth(label, rng, size, style)[0]


PHANTOM_TASKS: dict[str, PhantomTask] = {
    "blood-cells": PhantomTask(
        name="blood-cells",
        classes=blood_cells.CLASSES,
        description="May-Grünwald-Giemsa peripheral blood smear, 8 cell classes (CellaVision-like crops)",
        style_sampler=blood_cells.sample_style,
        param_sampler=blood_cells.sample_params,
        drawer=blood_cells.draw,
        truth_fn=blood_cells.truth,
    ),
}


def _get_task(task: str) -> PhantomTask:
    try:
        return PHANTOM_TASKS[task]
    except KeyError:
        raise KeyError(f"unknown phantom task {task!r}; available: {sorted(PHANTOM_TASKS)}") from None


def group_plan(classes: tuple[str, ...], n: int, groups: int) -> list[tuple[str, int]]:
    """Label and group of each image index.

    Counts per class differ by at most one. Labels cycle through the classes (round robin) and
    groups are contiguous runs of that cycle, so every group holds ``min(len(classes), n // groups)``
    or more distinct classes.
    """
    k = len(classes)
    remaining = [n // k + (1 if i < n % k else 0) for i in range(k)]
    labels: list[str] = []
    while len(labels) < n:
        for i, c in enumerate(classes):
            if remaining[i] > 0:
                labels.append(c)
                remaining[i] -= 1
    return [(lab, j * groups // n) for j, lab in enumerate(labels)]


def _check_empty(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"refusing to write phantoms into {str(out)!r}: it already exists and is not an empty directory; "
            "choose a new output directory or remove it first"
        )


def write_phantoms(
    task: str,
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    size: int = 128,
    groups: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Write ``n`` phantom images as an ImageFolder tree plus ``manifest.csv``.

    Layout: ``out_dir/<class>/<class>_<index:05d>.png`` and ``out_dir/manifest.csv`` with columns
    ``path`` (relative POSIX path), ``label``, ``group`` (``P000``...), ``index``, the group's style
    values and the generator's per-image truth (``blur_sigma`` in output pixels, ``subtype``...).

    Args:
        task: a key of :data:`PHANTOM_TASKS`.
        out_dir: output directory; must not exist or be empty.
        n: number of images, split as evenly as possible over the classes.
        seed: master seed; the same arguments give byte-identical files.
        size: image side in pixels.
        groups: number of synthetic patients / slides; default ``max(4, n // 25)``.
        progress: print progress to stderr.

    Returns:
        The manifest as a DataFrame.

    Raises:
        FileExistsError: ``out_dir`` exists and is not an empty directory.
    """
    spec = _get_task(task)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    groups = max(4, n // 25) if groups is None else int(groups)
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    out = Path(out_dir)
    _check_empty(out)
    plan = group_plan(spec.classes, n, groups)
    width = max(3, len(str(groups - 1)))
    styles = [spec.sample_style(np.random.default_rng([seed, _STYLE_SALT, g])) for g in range(groups)]
    for c in spec.classes:
        (out / c).mkdir(parents=True, exist_ok=True)
    rows = []
    step = max(1, n // 10)
    for index, (label, g) in enumerate(plan):
        img, truth = spec.render_with_truth(label, np.random.default_rng([seed, index]), size, styles[g])
        rel = f"{label}/{label}_{index:05d}.png"
        Image.fromarray(img, mode="RGB").save(out / rel, format="PNG")
        rows.append(
            {"path": rel, "label": label, "group": f"P{g:0{width}d}", "index": index, **styles[g], **truth}
        )
        if progress and ((index + 1) % step == 0 or index + 1 == n):
            print(f"phantoms {task}: {index + 1}/{n}", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "manifest.csv", index=False)
    return df


def montage(task: str, out_png: str | Path, per_class: int = 8, seed: int = 0, size: int = 96) -> Path:
    """Save a labelled grid (one row per class, ``per_class`` examples) and return its path.

    Column ``k`` uses group style ``k`` for every row, so a column shows one synthetic slide.
    """
    spec = _get_task(task)
    label_w = 8 + 7 * max(len(c) for c in spec.classes)
    pad = 2
    grid = Image.new("RGB", (label_w + per_class * (size + pad), len(spec.classes) * (size + pad)), "white")
    pen = ImageDraw.Draw(grid)
    styles = [spec.sample_style(np.random.default_rng([seed, _STYLE_SALT, k])) for k in range(per_class)]
    for row, label in enumerate(spec.classes):
        y = row * (size + pad)
        pen.text((4, y + size // 2 - 5), label, fill=(0, 0, 0))
        for k in range(per_class):
            rng = np.random.default_rng([seed, row * per_class + k])
            grid.paste(
                Image.fromarray(spec.render(label, rng, size, styles[k])), (label_w + k * (size + pad), y)
            )
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out, format="PNG", optimize=True)
    return out
