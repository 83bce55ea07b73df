"""A captioned grid of images (a contact sheet): what a technician looks over before labelling a batch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def contact_sheet(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    out_png: str | Path,
    columns: int = 10,
    size: int = 96,
) -> Path:
    """Save ``images`` (H×W×3 uint8, any size: each is fitted into a ``size`` square) in rows of ``columns``, each
    with its caption underneath, as a PNG; return its path."""
    columns = max(1, min(columns, len(images) or 1))
    rows = -(-len(images) // columns)
    cell_h = size + 14
    sheet = Image.new("RGB", (columns * (size + 4) + 4, max(1, rows) * (cell_h + 4) + 4), "white")
    pen = ImageDraw.Draw(sheet)
    for i, (im, caption) in enumerate(zip(images, captions, strict=True)):
        tile = Image.fromarray(np.asarray(im, dtype=np.uint8))
        tile.thumbnail((size, size))
        x, y = 4 + (i % columns) * (size + 4), 4 + (i // columns) * (cell_h + 4)
        sheet.paste(tile, (x + (size - tile.width) // 2, y + (size - tile.height) // 2))
        pen.text((x, y + size + 1), caption[: size // 6], fill=(0, 0, 0))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG", optimize=True)
    return out
