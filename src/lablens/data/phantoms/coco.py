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
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"counts": [int(c) for c in counts], "size": [int(mask.shape[0]), int(mask.shape[1])]}


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
