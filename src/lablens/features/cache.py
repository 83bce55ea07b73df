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


class FeatureStore:
    """Cached features of one extractor, in memory and on disk."""

    def __init__(self, key: str, cache_dir: str | Path | None = None) -> None:
        self.key = key
        root = Path(cache_dir) if cache_dir else default_cache_dir()
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        self.path = root / "features" / f"{digest}.npz"
        self._rows: dict[str, np.ndarray] = {}
        self._load()

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as z:
                if str(z["key"]) != self.key:
                    return
                self._rows = dict(zip(z["hashes"].tolist(), z["features"], strict=True))
        except (OSError, ValueError, KeyError):
            self._rows = {}

    def _save(self) -> None:
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

    def get(
        self,
        images: np.ndarray,
        compute: Callable[[np.ndarray], np.ndarray],
        on_progress: Callable[[int], None] | None = None,
        chunk: int = 64,
    ) -> np.ndarray:
        """Features of ``images`` (``N×D`` float32), computing only those not cached yet."""
        hashes = image_hashes(images)
        missing = list(dict.fromkeys(h for h in hashes if h not in self._rows))
        first = {h: i for i, h in reversed(list(enumerate(hashes)))}  # one crop per distinct hash
        copies = Counter(hashes.tolist())
        if on_progress:
            on_progress(len(images) - sum(copies[h] for h in missing))
        for start in range(0, len(missing), chunk):
            todo = missing[start : start + chunk]
            idx = [first[h] for h in todo]
            feats = np.asarray(compute(np.asarray(images[idx])), dtype=np.float32)
            for h, row in zip(todo, feats, strict=True):
                self._rows[h] = row
            if on_progress:
                on_progress(sum(copies[h] for h in todo))
        if missing:
            self._save()
        if not len(images):
            return np.zeros((0, 0), np.float32)
        return np.stack([self._rows[h] for h in hashes]).astype(np.float32)
