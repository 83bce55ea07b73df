"""Write a phantom dataset to disk: ImageFolder tree, ``manifest.csv`` and, for fields, the object truth.

Seeding convention (so that a dataset replays byte for byte and any single image can be re-rendered):
image ``index`` uses ``np.random.default_rng([seed, index])`` (fields: ``[seed, FIELD_SALT, index]``)
and group ``g`` uses ``np.random.default_rng([seed, STYLE_SALT, g])`` for its style.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from lablens import jsonio
from lablens.errors import OutputExistsError, SettingError
from lablens.phantoms.coco import coco_document, rle_encode
from lablens.phantoms.contract import Instance, Phantom, PhantomFields, Style
from lablens.progress import SilentProgress
from lablens.quality.degrade import LEVEL_STEP, MAX_LEVEL, parse_levels

STYLE_SALT = 7919
FIELD_SALT = 104_729
BLUR_STEP = LEVEL_STEP  # extra defocus sigma per blur level, as a fraction of the image side
MAX_BLUR_LEVEL = MAX_LEVEL


def parse_blur_levels(levels: str | Sequence[int] | None) -> tuple[int, ...]:
    """``"0,2,4"`` or ``"0-4"`` or ``[0, 2]`` → sorted unique levels in ``0..MAX_BLUR_LEVEL``; None → ``(0,)``.

    The grammar is the degradation protocol's (:func:`lablens.quality.degrade.parse_levels`), so a phantom's
    ``--blur`` level and a ``lablens degrade`` level mean the same blur.
    """
    if levels is None or levels == "":
        return (0,)
    return parse_levels(levels)


def default_groups(n: int, n_classes: int, one_label_per_group: bool) -> int:
    """Synthetic patients: ~25 images each; with one label per group ~10 each and at least 5 per class.

    One-label groups are smaller so that a 10 % test split still holds several patients per class.
    """
    if one_label_per_group:
        return min(n, max(5 * n_classes, n // 10))
    return max(4, n // 25)


def group_plan(
    classes: tuple[str, ...], n: int, groups: int, one_label_per_group: bool = False
) -> list[tuple[str, int]]:
    """Label and group of each image index.

    Counts per class differ by at most one; labels cycle through the classes (round robin).
    Without ``one_label_per_group`` groups are contiguous runs of that cycle, so every group holds
    ``min(len(classes), n // groups)`` or more distinct classes. With it, group ``g`` carries class
    ``g % len(classes)`` only and a class's images are dealt over its groups in turn.
    """
    k = len(classes)
    remaining = [n // k + (1 if i < n % k else 0) for i in range(k)]
    labels: list[str] = []
    while len(labels) < n:
        for i, c in enumerate(classes):
            if remaining[i] > 0:
                labels.append(c)
                remaining[i] -= 1
    if not one_label_per_group:
        return [(lab, j * groups // n) for j, lab in enumerate(labels)]
    if groups < k:
        raise SettingError(f"one label per group needs at least one group per class ({k}), got groups={groups}")
    own = {c: [g for g in range(groups) if g % k == i] for i, c in enumerate(classes)}
    seen = dict.fromkeys(classes, 0)
    plan = []
    for lab in labels:
        plan.append((lab, own[lab][seen[lab] % len(own[lab])]))
        seen[lab] += 1
    return plan


def _check_empty(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExistsError(
            f"refusing to write phantoms into {str(out)!r}: it already exists and is not an empty directory; "
            "choose a new output directory or remove it first"
        )


def _blur_plan(plan: list[tuple[str, int]], levels: tuple[int, ...]) -> list[int]:
    """The i-th image of each class gets ``levels[i % len(levels)]``: levels balanced within every class."""
    seen: dict[str, int] = {}
    out = []
    for label, _ in plan:
        i = seen.get(label, 0)
        out.append(levels[i % len(levels)])
        seen[label] = i + 1
    return out


@dataclass(frozen=True)
class _Request:
    """The checked arguments of :func:`write_phantoms`."""

    spec: PhantomFields | None
    classes: tuple[str, ...]
    size: int
    levels: tuple[int, ...]
    one_label_per_group: bool
    groups: int


def _check_request(
    task: Phantom,
    n: int,
    size: int | None,
    groups: int | None,
    blur: str | Sequence[int] | None,
    fields: bool,
) -> _Request:
    """Validate :func:`write_phantoms`' arguments and fill in the task's defaults."""
    if fields and task.fields is None:
        raise SettingError(f"phantom task {task.name!r} has no whole-field mode (--fields)")
    spec = task.fields if fields else None
    classes = spec.classes if spec else task.classes
    if n < 1:
        raise SettingError(f"n must be >= 1, got {n}")
    size = int(size or (spec.default_size if spec else task.default_size))
    if size < 16:
        raise SettingError(f"size must be >= 16 pixels, got {size}")
    levels = parse_blur_levels(blur)
    per_group = spec.one_label_per_group if spec else task.one_label_per_group
    groups = default_groups(n, len(classes), per_group) if groups is None else int(groups)
    if groups < 1:
        raise SettingError(f"groups must be >= 1, got {groups}")
    return _Request(spec, classes, size, levels, per_group, groups)


@dataclass
class _FieldTruth:
    """Per-object truth gathered over a field dataset: ``cells.csv`` rows, COCO images and annotations."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)


def _object_row(
    rel: str, k: int, inst: Instance, box: tuple[int, int, int, int], area: int
) -> dict[str, Any]:
    """The ``cells.csv`` row of object ``k`` of the field at ``rel``."""
    x0, y0, x1, y1 = box
    return {
        "path": rel,
        "object": k,
        "label": inst.label,
        "x0": x0,
        "y0": y0,
        "x1": x1,
        "y1": y1,
        "area": area,
        "center_x": round(float(inst.center[0]), 2),
        "center_y": round(float(inst.center[1]), 2),
        "may_overlap": bool(inst.may_overlap),
        **inst.attrs,
    }


def _coco_annotation(
    ann_id: int, image_id: int, category_id: int, inst: Instance, box: tuple[int, int, int, int], area: int
) -> dict[str, Any]:
    """One COCO annotation: box, area and RLE mask of ``inst``."""
    x0, y0, x1, y1 = box
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": area,
        "iscrowd": 0,
        "segmentation": rle_encode(inst.mask),
        "attributes": {"may_overlap": bool(inst.may_overlap), **inst.attrs},
    }


def _add_field_truth(
    truth: _FieldTruth, rel: str, index: int, size: int, instances: Sequence[Instance], spec: PhantomFields
) -> None:
    """Record field ``index`` (at ``rel``) and its objects in ``truth``."""
    truth.images.append({"id": index + 1, "file_name": rel, "width": size, "height": size})
    for k, inst in enumerate(instances):
        box = inst.box()
        area = int(inst.mask.sum())
        truth.objects.append(_object_row(rel, k, inst, box, area))
        category = spec.instance_classes.index(inst.label) + 1
        truth.annotations.append(
            _coco_annotation(len(truth.annotations) + 1, index + 1, category, inst, box, area)
        )


def _write_field_truth(
    out: Path, truth: _FieldTruth, spec: PhantomFields, task_name: str, seed: int, size: int
) -> None:
    """Write ``cells.csv`` and the COCO ``annotations.json``."""
    pd.DataFrame(truth.objects).to_csv(out / "cells.csv", index=False)
    info = {"description": f"lablens phantom fields, task {task_name}", "seed": seed, "size": size}
    doc = coco_document(truth.images, truth.annotations, spec.instance_classes, info)
    (out / "annotations.json").write_text(jsonio.dumps(doc, separators=(",", ":")), encoding="utf-8")


def _write_images(
    task: Phantom,
    req: _Request,
    out: Path,
    seed: int,
    plan: list[tuple[str, int]],
    styles: list[Style],
    progress: Any,
) -> tuple[list[dict[str, Any]], _FieldTruth]:
    """Render and save every image of ``plan``; return the manifest rows and (fields) the object truth."""
    spec, size = req.spec, req.size
    blur_levels = _blur_plan(plan, req.levels)
    width = max(3, len(str(req.groups - 1)))
    rows: list[dict[str, Any]] = []
    field_truth = _FieldTruth()
    prog = progress or SilentProgress()
    bar = prog.task(f"phantoms {task.name}", total=len(plan))
    for index, ((label, g), level) in enumerate(zip(plan, blur_levels, strict=True)):
        extra = level * BLUR_STEP
        rel = f"{label}/{label}_{index:05d}.png"
        if spec:
            rng = np.random.default_rng([seed, FIELD_SALT, index])
            img, instances, truth = task.render_field(label, rng, size, styles[g], extra)
            truth["n_objects"] = len(instances)
            _add_field_truth(field_truth, rel, index, size, instances, spec)
        else:
            rng = np.random.default_rng([seed, index])
            img, truth = task.render_with_truth(label, rng, size, styles[g], extra)
        Image.fromarray(img, mode="RGB").save(out / rel, format="PNG")
        rows.append(
            {
                "path": rel,
                "label": label,
                "group": f"P{g:0{width}d}",
                "index": index,
                "blur_level": level,
                **styles[g],
                **truth,
            }
        )
        bar.advance()
    bar.done()
    return rows, field_truth


def write_phantoms(
    task: Phantom,
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    size: int | None = None,
    groups: int | None = None,
    blur: str | Sequence[int] | None = None,
    fields: bool = False,
    progress: Any = None,
) -> pd.DataFrame:
    """Write ``n`` phantom images (or whole fields) as an ImageFolder tree plus ``manifest.csv``.

    Layout: ``out_dir/<class>/<class>_<index:05d>.png`` and ``out_dir/manifest.csv`` with columns
    ``path`` (relative POSIX path), ``label``, ``group`` (``P000``...), ``index``, ``blur_level``,
    the group's style values and the generator's per-image truth (``blur_sigma`` in output pixels,
    ``subtype``...). With ``fields=True`` also ``cells.csv`` (one row per annotated object: box,
    area, centre, attributes) and ``annotations.json`` (COCO, boxes and RLE masks).

    Args:
        task: the phantom task.
        out_dir: output directory; must not exist or be empty (nothing is ever overwritten).
        n: number of images, split as evenly as possible over the classes.
        seed: master seed; the same arguments give byte-identical files.
        size: image side in pixels (default: the task's, or its field size with ``fields``).
        groups: number of synthetic patients / slides (default :func:`default_groups`).
        blur: extra defocus levels (``"0-4"``); level ``L`` adds sigma ``L * size / 96`` pixels.
        fields: write whole fields with per-object truth instead of single-object images.
        progress: a :mod:`lablens.progress` object (silent when omitted).

    Returns:
        The manifest as a DataFrame.
    """
    req = _check_request(task, n, size, groups, blur, fields)
    out = Path(out_dir)
    _check_empty(out)
    plan = group_plan(req.classes, n, req.groups, req.one_label_per_group)
    styles = [task.sample_style(np.random.default_rng([seed, STYLE_SALT, g])) for g in range(req.groups)]
    for c in sorted({lab for lab, _ in plan}):
        (out / c).mkdir(parents=True, exist_ok=True)
    rows, field_truth = _write_images(task, req, out, seed, plan, styles, progress)
    df = pd.DataFrame(rows)
    df.to_csv(out / "manifest.csv", index=False)
    if req.spec:
        _write_field_truth(out, field_truth, req.spec, task.name, seed, req.size)
    return df
