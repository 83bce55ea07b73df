"""The image-quality measures as one feature extractor, so a blur-level model is an ordinary estimator.

``quality`` gives the measures of :mod:`lablens.quality.measures` with the sharpness ones on a log scale
(they span decades between sharp and blurred). With it, a quality model is just
``FeatureClassifier(features="quality", classifier="lightgbm")`` trained on a degraded set's
``blur_level`` column (registered as ``blur_level``), saved and loaded as a normal bundle.
"""

from __future__ import annotations

import numpy as np

from lablens.features.base import FeatureExtractor
from lablens.features.registry import register_extractor
from lablens.quality.measures import list_measures, measure_batch

_LOG_SCALED = ("laplacian_var", "tenengrad", "brenner", "noise")


@register_extractor("quality")
class QualityMeasures(FeatureExtractor):
    """Every registered quality measure of a crop (sharpness and noise on log10)."""

    name = "quality"

    def key(self) -> str:
        return f"quality[{','.join(list_measures())};log]"

    def feature_names(self) -> list[str]:
        return [f"quality_{n}" for n in list_measures()]

    def transform(self, images: np.ndarray) -> np.ndarray:
        names = list_measures()
        values = measure_batch(images, names)
        for j, n in enumerate(names):
            if n in _LOG_SCALED:
                values[:, j] = np.log10(values[:, j] + 1e-8)
        return values.astype(np.float32)
