"""A feature spec (``hu+haralick+lbp``, ``deep[efficientnet_lite0]``) as one extractor: concatenated columns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from lablens.features.cache import FeatureStore
from lablens.features.registry import create_extractors


class FeatureSet:
    """The extractors of a spec, applied in order, each through its per-image cache.

    Args:
        spec: ``+``-joined extractor terms (see :mod:`lablens.features.registry`).
        cache: keep features in the per-image cache (``cache_dir`` or the lablens cache folder).
    """

    def __init__(self, spec: str, cache: bool = True, cache_dir: str | Path | None = None) -> None:
        self.spec = spec
        self.extractors = create_extractors(spec)
        self.stores = [FeatureStore(e.key(), cache_dir) if cache else None for e in self.extractors]

    def feature_names(self) -> list[str]:
        return [n for e in self.extractors for n in e.feature_names()]

    def group_slices(self) -> dict[str, slice]:
        """Column range of each extractor, for feature importances per family."""
        out, start = {}, 0
        for e in self.extractors:
            width = len(e.feature_names())
            out[e.key()] = slice(start, start + width)
            start += width
        return out

    def transform(self, images: np.ndarray, on_progress: Callable[[int], None] | None = None) -> np.ndarray:
        blocks = []
        for extractor, store in zip(self.extractors, self.stores, strict=True):
            if store is None:
                block = np.asarray(extractor.transform(images), dtype=np.float32)
                if on_progress:
                    on_progress(len(images))
            else:
                block = store.get(images, extractor.transform, on_progress)
            blocks.append(block)
        features = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(images), 0), np.float32)
        # a descriptor can be undefined on a degenerate crop; 0 is neutral after scaling
        return np.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0)
