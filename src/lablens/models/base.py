"""The one estimator contract every model family obeys (scikit-learn's, plus typed parameters and bundle state).

- a family declares its hyper-parameters once, as a pydantic model ``Params`` (names, types, defaults, bounds),
  and its :class:`~lablens.models.registry.Capabilities`;
- ``__init__`` only stores its keyword arguments, untouched (:func:`~lablens.params.params_init` builds it from ``Params``, so
  ``get_params``/``set_params``/``clone`` work and the signature can never drift from the declaration);
- ``fit(X, y, X_val=None, y_val=None, *, groups=None, groups_val=None, context=None)`` learns and returns
  ``self``; learned attributes end in ``_``; ``context`` (:class:`~lablens.train.context.FitContext`) carries
  runtime matters — progress, checkpoints, resume, device, processes — never hyper-parameters;
- ``predict_proba(X)`` returns ``N×K`` probabilities in the column order of ``classes_`` (sorted labels);
  ``predict_logits(X)`` unnormalised scores (log-probabilities for non-neural models), the input of temperature
  scaling; both take ``device`` and ``batch_size`` as runtime keywords;
- ``export_state()`` → ``(tensors, meta)``: arrays and a JSON-ready dict, enough for ``import_state`` to rebuild
  a fitted estimator without pickle (bundles store these as safetensors).

``X`` is always an ``N×S×S×3`` uint8 image array (the decode-once cache) so every family sees the same pixels
under the same protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel
from sklearn.base import BaseEstimator, ClassifierMixin

from lablens.data.preprocess import to_square
from lablens.errors import SettingError
from lablens.params import validate_params

if TYPE_CHECKING:
    from lablens.models.registry import Capabilities


class ImageClassifier(ClassifierMixin, BaseEstimator):
    """Base class of every family: typed parameters, label encoding, resizing and ``predict``."""

    Params: ClassVar[type[BaseModel]]
    capabilities: ClassVar[Capabilities]
    summary: ClassVar[str] = ""  # what the family is, in a few words, for messages
    classes_: np.ndarray

    def typed_params(self) -> Any:
        """The current parameters as the family's ``Params`` (refusing, by name, any that do not fit)."""
        return validate_params(type(self).Params, self.get_params(), type(self).__name__)

    def predict_logits(
        self, X: np.ndarray, *, device: str | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        return np.log(np.clip(self.predict_proba(X, device=device, batch_size=batch_size), 1e-12, 1.0))

    def predict_proba(
        self, X: np.ndarray, *, device: str | None = None, batch_size: int | None = None
    ) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def export_state(self) -> tuple[dict[str, Any], dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def import_state(
        self, tensors: dict[str, Any], meta: dict[str, Any]
    ) -> ImageClassifier:  # pragma: no cover
        raise NotImplementedError

    # -- helpers shared by the families --------------------------------------------------------------------
    def resize_images(self, X: np.ndarray) -> np.ndarray:
        """Images at the estimator's ``image_size`` (resized by ``resize_mode`` when they are not)."""
        X = check_images(X)
        size = int(self.image_size)  # type: ignore[attr-defined]
        if X.shape[1:3] == (size, size):
            return X
        return np.stack([to_square(np.asarray(im), size, self.resize_mode) for im in X])  # type: ignore[attr-defined]

    def _encode_labels(
        self, y: np.ndarray, y_val: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Set ``classes_`` (sorted labels of ``y``) and return class indices of ``y`` and ``y_val``."""
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        y_idx = np.searchsorted(self.classes_, y)
        if y_val is None or len(y_val) == 0:
            return y_idx, None
        unknown = set(np.unique(y_val).tolist()) - set(self.classes_.tolist())
        if unknown:
            raise SettingError(f"validation labels not seen in training: {sorted(unknown)}")
        return y_idx, np.searchsorted(self.classes_, np.asarray(y_val))


def check_images(X: Any) -> np.ndarray:
    """``X`` itself when it is an ``N×H×W×3`` uint8 array; a ValueError saying what it is otherwise."""
    if not isinstance(X, np.ndarray) or X.ndim != 4 or X.shape[-1] != 3 or X.dtype != np.uint8:
        shape = getattr(X, "shape", None)
        raise ValueError(f"expected an N×H×W×3 uint8 image array, got {type(X).__name__} shape {shape}")
    return X
