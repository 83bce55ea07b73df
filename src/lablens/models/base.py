"""The one estimator contract every model family obeys (scikit-learn's, plus state export for bundles).

- ``__init__`` only stores its keyword arguments, untouched (so ``get_params``/``clone`` work);
- ``fit(X, y, X_val=None, y_val=None)`` learns and returns ``self``; learned attributes end in ``_``;
- ``predict_proba(X)`` returns ``N×K`` probabilities in the column order of ``classes_``;
- ``predict_logits(X)`` returns unnormalised scores (log-probabilities for non-neural models), the
  input of temperature scaling;
- ``export_state()`` → ``(tensors, meta)``: numpy/torch arrays and a JSON-ready dict, enough for
  ``import_state`` to rebuild a fitted estimator without pickle (bundles store these as safetensors).

``X`` is always an ``N×S×S×3`` uint8 image array (the decode-once cache) so every family sees the same
pixels under the same protocol.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from lablens.data.preprocess import to_square


class ImageClassifier(ClassifierMixin, BaseEstimator):
    """Base class providing ``predict`` and helpers; subclasses implement the rest of the contract."""

    classes_: np.ndarray

    def predict_logits(self, X: np.ndarray) -> np.ndarray:
        return np.log(np.clip(self.predict_proba(X), 1e-12, 1.0))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def export_state(self) -> tuple[dict[str, Any], dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def import_state(
        self, tensors: dict[str, Any], meta: dict[str, Any]
    ) -> ImageClassifier:  # pragma: no cover
        raise NotImplementedError

    def _sized(self, X: np.ndarray) -> np.ndarray:
        """Crops at the estimator's ``image_size`` (resized by ``resize_mode`` when they are not)."""
        size = self.image_size  # type: ignore[attr-defined]
        if X.shape[1:3] == (size, size):
            return X
        return np.stack([to_square(np.asarray(im), size, self.resize_mode) for im in X])  # type: ignore[attr-defined]

    @staticmethod
    def _check_images(X: np.ndarray) -> np.ndarray:
        if not isinstance(X, np.ndarray) or X.ndim != 4 or X.shape[-1] != 3 or X.dtype != np.uint8:
            shape = getattr(X, "shape", None)
            raise ValueError(f"expected an N×H×W×3 uint8 image array, got {type(X).__name__} shape {shape}")
        return X
