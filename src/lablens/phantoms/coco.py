"""COCO-style annotations for generated fields: boxes and run-length-encoded instance masks.

We write the *uncompressed* COCO RLE (``{"counts": [...], "size": [h, w]}``, column-major runs
starting with background), which pycocotools, detectron2 and CVAT read. It is ten lines of NumPy,
so we do not add pycocotools (a compiled dependency) just to write it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO RLE of a boolean ``(H, W)`` mask."""
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    size = [int(h), int(w)]
    cols = np.flatnonzero(mask.any(axis=0))
    if len(cols) == 0:
        return {"counts": [h * w], "size": size}
    # Column-major order: the full-height slab of occupied columns is one contiguous stretch, so encode
    # only that and add the background before and after it (a small object costs little in a big field).
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    flat = mask[:, x0:x1].ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds)
    counts = [0] if flat[0] else []  # counts start with a background run, possibly empty
    counts += [int(c) for c in runs]
    counts[0] += x0 * h  # background runs before the slab ...
    if not flat[-1]:
        counts[-1] += (w - x1) * h  # ... and after it
    elif x1 < w:
        counts.append((w - x1) * h)
    return {"counts": counts, "size": size}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`rle_encode`."""
    h, w = rle["size"]
    flat = np.zeros(h * w, bool)
    pos, value = 0, False
    for c in rle["counts"]:
        if value:
            flat[pos : pos + c] = True
        pos += c
        value = not value
    return flat.reshape((h, w), order="F")


def coco_document(
    images: list[dict[str, Any]], annotations: list[dict[str, Any]], categories: tuple[str, ...], info: dict
) -> dict[str, Any]:
    """Assemble a COCO detection/segmentation document (category ids start at 1)."""
    return {
        "info": info,
        "images": images,
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(categories)],
        "annotations": annotations,
    }
