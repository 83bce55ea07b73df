"""A feature spec (``hu+haralick+lbp``, ``deep[efficientnet_lite0]``) as one extractor: concatenated columns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from lablens.features.base import PerCellExtractor, describe_crops
from lablens.features.cache import FeatureStore, first_rows, image_hashes
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
        images = np.asarray(images)
        hashes = image_hashes(images)
        blocks = self._per_cell_blocks(images, hashes)
        for k, (extractor, store) in enumerate(zip(self.extractors, self.stores, strict=True)):
            if k in blocks:
                if on_progress:
                    on_progress(len(images))
            elif store is None:
                blocks[k] = np.asarray(extractor.transform(images), dtype=np.float32)
                if on_progress:
                    on_progress(len(images))
            else:
                blocks[k] = store.get(images, extractor.transform, on_progress, hashes=hashes)
        ordered = [blocks[k] for k in range(len(self.extractors))]
        features = np.concatenate(ordered, axis=1) if ordered else np.zeros((len(images), 0), np.float32)
        # a descriptor can be undefined on a degenerate crop; 0 is neutral after scaling
        return np.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0)

    def _per_cell_blocks(self, images: np.ndarray, hashes: np.ndarray) -> dict[int, np.ndarray]:
        """The columns of every handcrafted extractor, computed together: each crop not cached yet is prepared
        once (:class:`CellView`) and described by each extractor that lacks it, crops in parallel."""
        cells = {k: e for k, e in enumerate(self.extractors) if isinstance(e, PerCellExtractor)}
        if not cells or not len(images):
            return {k: np.zeros((len(images), len(e.feature_names())), np.float32) for k, e in cells.items()}
        stores = {k: self.stores[k] or FeatureStore(e.key(), persist=False) for k, e in cells.items()}
        lacking = {k: set(store.missing(hashes)) for k, store in stores.items()}
        first = first_rows(hashes)
        todo = [h for h in dict.fromkeys(hashes.tolist()) if any(h in hs for hs in lacking.values())]
        needs = [[k for k in cells if h in lacking[k]] for h in todo]
        described = describe_crops(images[[first[h] for h in todo]], [[cells[k] for k in ks] for ks in needs])
        for k in cells:
            rows = {h: r[ks.index(k)] for h, r, ks in zip(todo, described, needs, strict=True) if k in ks}
            if rows:
                stores[k].add(list(rows), np.stack(list(rows.values())))
                stores[k].save()
        return {k: store.rows(hashes) for k, store in stores.items()}
