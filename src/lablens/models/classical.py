"""Features + a classical classifier, behind the same estimator contract as the deep models.

``FeatureClassifier(features="hu+haralick+lbp", classifier="lightgbm")`` extracts the features of each crop
(cached per image, see :mod:`lablens.features`), then fits a scikit-learn Pipeline from
:mod:`lablens.models.classifiers` on the training crops only. Validation crops, when given, join the training
data: a classical model has no epochs to select, and its optional hyper-parameter search runs a grouped inner
cross-validation inside the training data (``groups`` keeps a patient's crops on one side of every inner fold).

Registered names: ``features`` (give both parts), ``handcrafted`` (all handcrafted descriptors + random forest),
``cnn_features`` (EfficientNet-Lite0 ImageNet features + RBF SVM, Acevedo 2019's recipe) and ``blur_level``
(quality measures + LightGBM, an image-quality model).

Because validation images join the training data, the family declares ``folds_validation``: its temperature is
fitted on cross-fitted out-of-fold scores instead (:mod:`lablens.train.calibrate`).

Bundles: the fitted Pipeline is stored with skops (a zip of JSON and arrays, loaded with an allow-list of
scikit-learn, LightGBM and XGBoost types, never unpickled) as a byte tensor inside ``weights.safetensors``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
from sklearn.utils.class_weight import compute_sample_weight

from lablens.errors import SettingError
from lablens.features.feature_set import FeatureSet
from lablens.models.base import ImageClassifier
from lablens.models.classifiers import classifier_spec
from lablens.models.registry import Capabilities, register
from lablens.models.skops_state import dump_pipeline, load_pipeline
from lablens.params import FamilyParams, params_init
from lablens.train.context import FitContext

HANDCRAFTED = "hu+zernike+haralick+lbp+colour+morphology"


class FeatureParams(FamilyParams):
    """A feature spec and a classifier.

    ``features``: extractor spec, e.g. ``hu+haralick+lbp`` or ``deep[efficientnet_lite0]``; ``classifier``:
    ``svm_rbf``, ``svm_linear``, ``logreg``, ``knn``, ``rf``, ``lightgbm`` or ``xgboost``; ``image_size``: crops
    of another size are resized to this first (``resize_mode``), as for the CNNs; ``search``: grid-search the
    classifier's hyper-parameters by grouped inner cross-validation (``search_folds``), scored by macro F1, inside
    the training data only; ``seed``: random state of the classifier and of the inner folds; ``cache``: keep
    extracted features in the per-image cache.
    """

    features: str = HANDCRAFTED
    classifier: str = "rf"
    image_size: int = Field(128, ge=16, le=2048)
    resize_mode: Literal["pad", "squash", "crop"] = "pad"
    search: bool = False
    search_folds: int = Field(3, ge=2)
    seed: int = 0
    cache: bool = True

    @field_validator("features")
    @classmethod
    def _known_features(cls, v: str) -> str:
        from lablens.features.registry import create_extractors

        create_extractors(v)  # an unknown name is a ValueError, which pydantic reports as this setting's
        return v

    @field_validator("classifier")
    @classmethod
    def _known_classifier(cls, v: str) -> str:
        classifier_spec(v)
        return v


@register("features")
class FeatureClassifier(ImageClassifier):
    """A feature spec and a classifier name, fitted on ``N×S×S×3`` uint8 crops (see :class:`FeatureParams`)."""

    Params = FeatureParams
    capabilities = Capabilities(uses_groups=True, folds_validation=True)
    summary = "features + a classical classifier"
    __init__ = params_init(FeatureParams)

    # -- features -----------------------------------------------------------------------------------
    def _feature_set(self) -> FeatureSet:
        if getattr(self, "_fs", None) is None or self._fs.spec != self.features:
            self._fs = FeatureSet(self.features, cache=self.cache)
        return self._fs

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Feature matrix of crops (``N×D`` float32), as the classifier sees it."""
        return self._feature_set().transform(self.resize_images(X))

    def embed(self, X: np.ndarray, *, device: str | None = None, batch_size: int | None = None) -> np.ndarray:
        """The feature matrix (:meth:`transform`): the embedding ``lablens suggest`` spreads a batch over."""
        return self.transform(X)

    # -- training -----------------------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        *,
        groups: np.ndarray | None = None,
        groups_val: np.ndarray | None = None,
        context: FitContext | None = None,
    ) -> FeatureClassifier:
        self.typed_params()
        threads = int((context.threads if context else None) or 1)
        y = np.asarray(y)
        feats = self.transform(X)
        if X_val is not None and len(X_val):
            feats = np.concatenate([feats, self.transform(X_val)])
            y = np.concatenate([y, np.asarray(y_val)])
            if groups is not None:
                groups = np.concatenate([np.asarray(groups), np.asarray(groups_val)])
        self.classes_ = np.unique(y)
        y_idx = np.searchsorted(self.classes_, y)
        spec = classifier_spec(self.classifier)
        pipeline = spec.build(int(self.seed), threads)
        searching = bool(self.search and spec.grid)
        inner = self._inner_folds(y_idx, groups) if searching else None
        self._fit_calibration_folds(pipeline, y_idx, inner)
        fit_params = {}
        if spec.sample_weighted:
            fit_params["clf__sample_weight"] = compute_sample_weight("balanced", y_idx)
        if searching:
            pipeline = GridSearchCV(pipeline, spec.grid, scoring="f1_macro", cv=inner, refit=True, n_jobs=1)
            pipeline.fit(feats, y_idx, **fit_params)
            self.best_params_ = {k: _jsonable(v) for k, v in pipeline.best_params_.items()}
            self.pipeline_ = pipeline.best_estimator_
        else:
            self.best_params_ = {}
            self.pipeline_ = pipeline.fit(feats, y_idx, **fit_params)
        self.feature_names_ = self._feature_set().feature_names()
        self.n_train_ = len(y)
        return self

    def _fit_calibration_folds(
        self, pipeline: Any, y_idx: np.ndarray, inner: list[tuple[np.ndarray, np.ndarray]] | None
    ) -> None:
        """Platt-scaled SVMs calibrate by internal CV: use at most 5 folds, fewer when the smallest class of
        the data they will be fitted on (each inner search fold's training part, when searching) is smaller."""
        if "clf__cv" not in pipeline.get_params():
            return
        parts = [y_idx] + [y_idx[train] for train, _ in inner or []]
        smallest = min(int(np.bincount(p, minlength=len(self.classes_)).min()) for p in parts)
        if smallest < 2:
            raise SettingError(
                f"{self.classifier}: a class has too few training images to calibrate probabilities"
            )
        pipeline.set_params(clf__cv=min(5, smallest))

    def _inner_folds(
        self, y_idx: np.ndarray, groups: np.ndarray | None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Index pairs of the inner search folds: grouped when groups are known."""
        k = int(self.search_folds)
        if groups is not None:
            cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=int(self.seed))
            return list(cv.split(np.zeros(len(y_idx)), y_idx, np.asarray(groups).astype(str)))
        cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=int(self.seed))
        return list(cv.split(np.zeros(len(y_idx)), y_idx))

    # -- inference ----------------------------------------------------------------------------------
    def predict_proba(
        self, X: np.ndarray, *, device: str | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        proba = self.pipeline_.predict_proba(self.transform(X))
        return np.asarray(proba, dtype=np.float64)

    def feature_importances(self) -> dict[str, float] | None:
        """Impurity/gain importances of tree models per feature (None for other classifiers)."""
        clf = self.pipeline_[-1]
        values = getattr(clf, "feature_importances_", None)
        if values is None:
            return None
        values = np.asarray(values, dtype=np.float64)
        total = values.sum()
        values = values / total if total > 0 else values
        return dict(zip(self.feature_names_, values.tolist(), strict=True))

    # -- bundles ------------------------------------------------------------------------------------
    def export_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        tensors = {"pipeline_skops": np.frombuffer(dump_pipeline(self.pipeline_), dtype=np.uint8).copy()}
        meta = {
            "arch": f"{self.features}:{self.classifier}",
            "classes": [str(c) for c in self.classes_],
            "feature_names": list(self.feature_names_),
            "best_params": self.best_params_,
            "n_train": int(self.n_train_),
        }
        return tensors, meta

    def import_state(self, tensors: dict[str, Any], meta: dict[str, Any]) -> FeatureClassifier:
        self.classes_ = np.asarray(meta["classes"])
        raw = np.asarray(tensors["pipeline_skops"], dtype=np.uint8).tobytes()
        self.pipeline_ = load_pipeline(raw)
        self.feature_names_ = list(meta["feature_names"])
        self.best_params_ = dict(meta.get("best_params") or {})
        self.n_train_ = int(meta.get("n_train", 0))
        return self


def _jsonable(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


register("handcrafted", fixed={"features": HANDCRAFTED, "classifier": "rf"})(FeatureClassifier)
register("cnn_features", fixed={"features": "deep[efficientnet_lite0]", "classifier": "svm_rbf"})(
    FeatureClassifier
)
# A blur-level (image quality) model: the quality measures + gradient boosting, trained on the
# ``blur_level`` column of a degraded set (``lablens degrade``); see lablens.infer.gate.
register("blur_level", fixed={"features": "quality", "classifier": "lightgbm"})(FeatureClassifier)
