"""Cell images on disk: re-encoded as PNG and stored under their sha256 (never under a name a client chose)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import numpy as np

from lablens.data.io import png_bytes

__all__ = ["image_path", "png_bytes", "store_png"]


def image_path(storage: Path, sha256: str) -> Path:
    return storage / sha256[:2] / f"{sha256}.png"


def store_png(storage: Path, img: np.ndarray) -> str:
    """Store ``img`` (once: the same cell twice is one file) and return its sha256."""
    png = png_bytes(img)
    digest = hashlib.sha256(png).hexdigest()
    target = image_path(storage, digest)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{digest}.{uuid.uuid4().hex}.tmp")  # atomic: readers never see half a file
        tmp.write_bytes(png)
        tmp.replace(target)
    return digest
