"""Per-image feature cache: computed once, keyed by content and options, robust to damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lablens.features.cache import FeatureStore


class _Counting:
    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.seen += len(images)
        return images.reshape(len(images), -1)[:, :3].astype(np.float32)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)


def test_features_are_computed_once_per_distinct_image(tmp_path: Path) -> None:
    imgs = _images(5)
    both = np.concatenate([imgs, imgs[:2]])  # duplicates are computed once
    count = _Counting()
    first = FeatureStore("k", tmp_path).get(both, count)
    assert count.seen == 5
    again = FeatureStore("k", tmp_path).get(imgs[::-1], count)  # a new store reads the file
    assert count.seen == 5
    np.testing.assert_array_equal(again, first[:5][::-1])


def test_other_options_or_changed_pixels_are_recomputed(tmp_path: Path) -> None:
    imgs = _images(3)
    count = _Counting()
    FeatureStore("k", tmp_path).get(imgs, count)
    FeatureStore("k2", tmp_path).get(imgs, count)
    changed = imgs.copy()
    changed[0, 0, 0, 0] ^= 1
    FeatureStore("k", tmp_path).get(changed, count)
    assert count.seen == 3 + 3 + 1


def test_damaged_cache_file_is_ignored(tmp_path: Path) -> None:
    store = FeatureStore("k", tmp_path)
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_bytes(b"not a zip")
    count = _Counting()
    out = FeatureStore("k", tmp_path).get(_images(2), count)
    assert count.seen == 2 and out.shape == (2, 3)
