"""Per-image feature cache: features are a pure function of (extractor, pixels), so compute each once.

A comparison runs many classifiers on the same features over many folds; this cache makes that cost one
extraction per image. Entries are keyed by the extractor's ``key()`` and a BLAKE2 hash of each crop's
pixels, so a changed option or a changed image is never served stale features. One ``.npz`` per extractor
under ``<cache>/features/``, replaced atomically; an unreadable file is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lablens.data.cache import default_cache_dir


def image_hashes(images: np.ndarray) -> np.ndarray:
    """A 32-hex-digit content hash per crop (shape included)."""
    out = []
    for im in images:
        h = hashlib.blake2b(str(im.shape).encode(), digest_size=16)
        h.update(np.ascontiguousarray(im).tobytes())
        out.append(h.hexdigest())
    return np.asarray(out, dtype="U32")


def first_rows(hashes: np.ndarray) -> dict[str, int]:
    """The row of each distinct hash's first crop (one crop is computed per distinct hash)."""
    return {h: i for i, h in reversed(list(enumerate(hashes.tolist())))}


class FeatureStore:
    """Cached features of one extractor, in memory and on disk (``persist=False``: in memory only)."""

    def __init__(self, key: str, cache_dir: str | Path | None = None, persist: bool = True) -> None:
        self.key = key
        self._rows: dict[str, np.ndarray] = {}
        self.path: Path | None = None
        if persist:
            root = Path(cache_dir) if cache_dir else default_cache_dir()
            self.path = root / "features" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                if str(z["key"]) != self.key:
                    return
                self._rows = dict(zip(z["hashes"].tolist(), z["features"], strict=True))
        except (OSError, ValueError, KeyError):
            self._rows = {}

    def save(self) -> None:
        """Write every row to the store's file, atomically (nothing to write for an in-memory store)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        hashes = np.asarray(list(self._rows), dtype="U32")
        feats = np.stack(list(self._rows.values())).astype(np.float32)
        fd, tmp = tempfile.mkstemp(prefix=".building-", suffix=".npz", dir=self.path.parent)
        os.close(fd)
        try:
            np.savez(tmp, key=np.asarray(self.key), hashes=hashes, features=feats)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def missing(self, hashes: np.ndarray) -> list[str]:
        """The distinct hashes of ``hashes`` with no cached row, in first-seen order."""
        return list(dict.fromkeys(h for h in hashes.tolist() if h not in self._rows))

    def add(self, hashes: list[str], rows: np.ndarray) -> None:
        """Keep computed rows in memory (:meth:`save` writes them)."""
        for h, row in zip(hashes, np.asarray(rows, dtype=np.float32), strict=True):
            self._rows[h] = row

    def rows(self, hashes: np.ndarray) -> np.ndarray:
        """The cached rows of ``hashes`` (``N×D`` float32); every hash must be cached."""
        if not len(hashes):
            return np.zeros((0, 0), np.float32)
        return np.stack([self._rows[h] for h in hashes.tolist()]).astype(np.float32)

    def get(
        self,
        images: np.ndarray,
        compute: Callable[[np.ndarray], np.ndarray],
        on_progress: Callable[[int], None] | None = None,
        chunk: int = 64,
        hashes: np.ndarray | None = None,
    ) -> np.ndarray:
        """Features of ``images`` (``N×D`` float32), computing only those not cached yet."""
        hashes = image_hashes(images) if hashes is None else hashes
        missing = self.missing(hashes)
        first = first_rows(hashes)
        copies = Counter(hashes.tolist())
        if on_progress:
            on_progress(len(images) - sum(copies[h] for h in missing))
        for start in range(0, len(missing), chunk):
            todo = missing[start : start + chunk]
            self.add(todo, compute(np.asarray(images[[first[h] for h in todo]])))
            if on_progress:
                on_progress(sum(copies[h] for h in todo))
        if missing:
            self.save()
        return self.rows(hashes)
