"""Labelled contact sheets of a phantom task (``docs/phantoms/<task>.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lablens.phantoms.contract import Phantom
from lablens.phantoms.write import FIELD_SALT, STYLE_SALT


def montage(
    task: Phantom,
    out_png: str | Path,
    per_class: int = 8,
    seed: int = 0,
    size: int = 96,
    field_size: int | None = None,
    compact: bool = False,
) -> Path:
    """Save a labelled grid (one row per class, ``per_class`` examples) and return its path.

    Column ``k`` uses group style ``k`` for every row, so a column shows one synthetic slide. When the
    task has whole fields, one field is appended below the grid, plain and with its object boxes.
    ``compact`` saves a 256-colour palette PNG (PIL ``Quantize.MAXCOVERAGE``, no dither), as in ``docs/``.
    """
    label_w = 8 + 7 * max(len(c) for c in task.classes)
    pad = 2
    grid_w = label_w + per_class * (size + pad)
    rows_h = len(task.classes) * (size + pad)
    field_img: Image.Image | None = None
    if task.fields is not None:
        field_img = _field_pair(task, seed, field_size, (grid_w - pad) // 2)
    total_h = rows_h + (field_img.height + pad if field_img else 0)
    grid = Image.new("RGB", (grid_w, total_h), "white")
    pen = ImageDraw.Draw(grid)
    styles = [task.sample_style(np.random.default_rng([seed, STYLE_SALT, k])) for k in range(per_class)]
    for row, label in enumerate(task.classes):
        y = row * (size + pad)
        pen.text((4, y + size // 2 - 5), label, fill=(0, 0, 0))
        for k in range(per_class):
            rng = np.random.default_rng([seed, row * per_class + k])
            grid.paste(
                Image.fromarray(task.render(label, rng, size, styles[k])), (label_w + k * (size + pad), y)
            )
    if field_img is not None:
        grid.paste(field_img, (0, rows_h + pad))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    if compact:
        grid = grid.quantize(256, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
    grid.save(out, format="PNG", optimize=True)
    return out


def _field_pair(task: Phantom, seed: int, field_size: int | None, half: int) -> Image.Image:
    """One generated field, plain (left) and with every object's box (right), each ``half`` wide."""
    assert task.fields is not None
    label = task.fields.classes[0]
    style = task.sample_style(np.random.default_rng([seed, STYLE_SALT, 0]))
    img, instances, _ = task.render_field(
        label, np.random.default_rng([seed, FIELD_SALT, 0]), field_size, style
    )
    plain = Image.fromarray(img)
    boxed = plain.copy()
    pen = ImageDraw.Draw(boxed)
    palette = [(255, 255, 0), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 128, 0), (255, 255, 255)]
    for inst in instances:
        colour = palette[task.fields.instance_classes.index(inst.label) % len(palette)]
        x0, y0, x1, y1 = inst.box()
        pen.rectangle((x0, y0, x1 - 1, y1 - 1), outline=colour)
    scale = half / plain.width
    new = (half, round(plain.height * scale))
    pair = Image.new("RGB", (2 * half + 2, new[1]), "white")
    pair.paste(plain.resize(new, Image.Resampling.LANCZOS), (0, 0))
    pair.paste(boxed.resize(new, Image.Resampling.LANCZOS), (half + 2, 0))
    return pair
