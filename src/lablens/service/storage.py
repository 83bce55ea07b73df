"""Cell images on disk: re-encoded as PNG and stored under their sha256 (never under a name a client chose)."""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path

import numpy as np
from PIL import Image


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


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
