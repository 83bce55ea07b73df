"""Decode each image once into a memory-mapped uint8 array at training size.

Training then indexes this ``N×S×S×3`` array (no JPEG decoding per epoch, no DataLoader workers) and
augments batches on the device, so a GPU is never starved by the CPU. The cache file is keyed by the
images' sha256 and the preprocessing, so evaluation, repeated runs and other models at the same size
reuse it. Location: ``data.cache_dir``, else ``$LABLENS_CACHE``, else ``~/.cache/lablens``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lablens.data.io import DecodeLimits, read_image
from lablens.data.preprocess import to_square

CACHE_VERSION = "1"


def default_cache_dir() -> Path:
    env = os.environ.get("LABLENS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lablens"


def cache_key(sha256s: Sequence[str], size: int, resize_mode: str) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{size}|{resize_mode}|".encode())
    for s in sha256s:
        h.update(s.encode())
    return h.hexdigest()[:32]


def load_pixels(
    paths: Sequence[str],
    sha256s: Sequence[str],
    size: int,
    resize_mode: str = "pad",
    cache_dir: str | Path | None = None,
    limits: DecodeLimits | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Return an ``N×size×size×3`` uint8 array (read-only memory map) of the given images.

    Images must already be validated (decoding errors here are raised, not skipped).
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"pixels-{size}-{resize_mode}-{cache_key(sha256s, size, resize_mode)}.npy"
    if target.exists():
        try:
            arr = np.load(target, mmap_mode="r")
            if arr.shape == (len(paths), size, size, 3) and arr.dtype == np.uint8:
                if on_progress:
                    on_progress(len(paths), len(paths))
                return arr
        except (OSError, ValueError):
            pass  # a damaged cache file is rebuilt below
    fd, tmp_name = tempfile.mkstemp(prefix=".building-", suffix=".npy", dir=cache_dir)
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(
            tmp_name, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3)
        )
        write_pixels(out, paths, size, resize_mode, limits, on_progress)
        out.flush()
        del out
        os.replace(tmp_name, target)  # atomic: a killed run never leaves a half-written cache behind
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return np.load(target, mmap_mode="r")


def write_pixels(
    out: np.ndarray,
    paths: Sequence[str],
    size: int,
    resize_mode: str,
    limits: DecodeLimits | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """Decode and resize ``paths`` into ``out`` (``N×size×size×3``) with a few threads."""
    limits = limits or DecodeLimits()

    def one(i: int) -> int:
        out[i] = to_square(read_image(paths[i], limits).pixels, size, resize_mode)
        return i

    workers = min(4, (os.cpu_count() or 1) + 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, _ in enumerate(pool.map(one, range(len(paths))), start=1):
            if on_progress:
                on_progress(done, len(paths))
