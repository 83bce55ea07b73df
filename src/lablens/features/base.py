"""The feature-extractor contract.

An extractor is a small object with its options stored untouched in ``__init__``:

- ``key()`` — a string naming the extractor and every option that changes its output (the cache key);
- ``feature_names()`` — one name per output column;
- ``transform(images)`` — ``N×S×S×3`` uint8 crops → ``N×D`` float32 features, one row per crop,
  independent of every other crop (so features can be cached per image and never leak between folds).

Handcrafted extractors subclass :class:`PerCellExtractor` and describe one prepared
:class:`~lablens.features.cell_view.CellView`; the view (grey, HSV, mask) is computed once per crop and
shared by all of them.
"""

from __future__ import annotations

import numpy as np

from lablens.features.cell_view import CellView, make_view


class PerCellExtractor:
    """Base for extractors that look at one crop at a time."""

    name = "abstract"

    def key(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in sorted(vars(self).items()))
        return f"{self.name}[{opts}]"

    def feature_names(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self, view: CellView) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def transform(self, images: np.ndarray) -> np.ndarray:
        return np.stack([self.describe(make_view(im)) for im in images]).astype(np.float32)
