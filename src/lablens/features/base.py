"""The feature-extractor contract.

An extractor is a scikit-learn transformer with its options stored untouched in ``__init__`` (so
``get_params``/``clone`` work) and nothing to learn (``fit`` returns it unchanged):

- ``key()`` — a string naming the extractor and every option that changes its output (the cache key);
- ``feature_names()`` — one name per output column;
- ``transform(images)`` — ``N×S×S×3`` uint8 crops → ``N×D`` float32 features, one row per crop,
  independent of every other crop (so features can be cached per image and never leak between folds).

Handcrafted extractors subclass :class:`PerCellExtractor` and describe one prepared
:class:`~lablens.features.cell_view.CellView`; the view (grey, HSV, mask) is computed once per crop and
shared by all of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from lablens.features.cell_view import CellView, make_view


class FeatureExtractor(TransformerMixin, BaseEstimator):
    """Base of every extractor: parameters as options, a stateless ``fit``, a cache key from the options."""

    name = "abstract"

    def fit(self, X: Any = None, y: Any = None) -> FeatureExtractor:
        """Nothing to learn: features are per-image functions of the pixels."""
        return self

    def key(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.get_params().items()))
        return f"{self.name}[{opts}]"

    def feature_names(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def transform(self, images: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class PerCellExtractor(FeatureExtractor):
    """Base for extractors that look at one crop at a time."""

    def describe(self, view: CellView) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def transform(self, images: np.ndarray) -> np.ndarray:
        return np.stack([self.describe(make_view(im)) for im in images]).astype(np.float32)
