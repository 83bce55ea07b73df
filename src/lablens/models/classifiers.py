"""The classical classifiers, by name: scikit-learn Pipelines with scaling where it matters and class weighting.

Each entry builds an unfitted Pipeline (scaler → classifier) and names a small hyper-parameter grid for the
optional search, which :class:`~lablens.models.classical.FeatureClassifier` runs inside its training data
only. Class weighting is "balanced" wherever the library supports it; XGBoost gets balanced sample weights
instead (it has no class_weight), and KNN has no weighting (noted in its card).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from lablens.registry import Registry


@dataclass(frozen=True)
class ClassifierSpec:
    """How to build one classifier family."""

    build: Callable[[int, int], Any]  # (seed, n_jobs) → unfitted Pipeline
    grid: dict[str, list[Any]] = field(default_factory=dict)
    sample_weighted: bool = False  # class balance through sample weights passed to fit


def _calibrated_svm(svm: SVC) -> CalibratedClassifierCV:
    """An SVM with Platt-scaled probabilities (one SVM on all training data, sigmoid fitted by 5-fold CV),
    scikit-learn's replacement for ``SVC(probability=True)``."""
    return CalibratedClassifierCV(svm, method="sigmoid", cv=5, ensemble=False)


def _svm_rbf(seed: int, n_jobs: int) -> Pipeline:
    svm = SVC(kernel="rbf", C=10.0, gamma="scale", class_weight="balanced", random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("clf", _calibrated_svm(svm))])


def _svm_linear(seed: int, n_jobs: int) -> Pipeline:
    svm = SVC(kernel="linear", C=0.1, class_weight="balanced", random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("clf", _calibrated_svm(svm))])


def _logreg(seed: int, n_jobs: int) -> Pipeline:
    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000, random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def _knn(seed: int, n_jobs: int) -> Pipeline:
    clf = KNeighborsClassifier(n_neighbors=7, weights="distance", n_jobs=n_jobs)
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def _random_forest(seed: int, n_jobs: int) -> Pipeline:
    clf = RandomForestClassifier(
        n_estimators=300, class_weight="balanced", n_jobs=n_jobs, random_state=seed, min_samples_leaf=1
    )
    return Pipeline([("clf", clf)])  # trees need no scaling


def _lightgbm(seed: int, n_jobs: int) -> Pipeline:
    from lightgbm import LGBMClassifier

    clf = LGBMClassifier(
        n_estimators=300,
        learning_rate=0.05,
        num_leaves=31,
        min_child_samples=10,  # labs often have a few hundred images; 20 is tuned for larger tables
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        class_weight="balanced",
        random_state=seed,
        n_jobs=n_jobs,
        verbose=-1,
    )
    return Pipeline([("clf", clf)])


def _xgboost(seed: int, n_jobs: int) -> Pipeline:
    from xgboost import XGBClassifier

    clf = XGBClassifier(
        n_estimators=300,
        learning_rate=0.1,
        max_depth=6,
        subsample=0.8,
        colsample_bytree=0.8,
        tree_method="hist",
        random_state=seed,
        n_jobs=n_jobs,
    )
    return Pipeline([("clf", clf)])


#: the classifiers a feature pipeline can end in, each with its cross-validated grid
CLASSIFIERS = Registry("classifier")
CLASSIFIERS.register(
    "svm_rbf",
    value=ClassifierSpec(
        _svm_rbf, {"clf__estimator__C": [1.0, 10.0, 100.0], "clf__estimator__gamma": ["scale", 0.001]}
    ),
)
CLASSIFIERS.register("svm_linear", value=ClassifierSpec(_svm_linear, {"clf__estimator__C": [0.01, 0.1, 1.0]}))
CLASSIFIERS.register("logreg", value=ClassifierSpec(_logreg, {"clf__C": [0.1, 1.0, 10.0]}))
CLASSIFIERS.register("knn", value=ClassifierSpec(_knn, {"clf__n_neighbors": [3, 7, 15]}))
CLASSIFIERS.register(
    "rf",
    value=ClassifierSpec(_random_forest, {"clf__max_features": ["sqrt", 0.3], "clf__min_samples_leaf": [1, 3]}),
)
CLASSIFIERS.register(
    "lightgbm",
    value=ClassifierSpec(_lightgbm, {"clf__num_leaves": [15, 31], "clf__learning_rate": [0.05, 0.1]}),
)
CLASSIFIERS.register(
    "xgboost",
    value=ClassifierSpec(_xgboost, {"clf__max_depth": [3, 6], "clf__learning_rate": [0.05, 0.2]}, True),
)
#: other names users write for the same classifiers
ALIASES = {
    "svm": "svm_rbf",
    "random_forest": "rf",
    "lgbm": "lightgbm",
    "xgb": "xgboost",
    "logistic": "logreg",
}
CLASSIFIERS.fallback(lambda name: CLASSIFIERS.entry(ALIASES[name]) if name in ALIASES else None)


def classifier_spec(name: str) -> ClassifierSpec:
    """The spec registered as ``name`` (or an alias); an UnknownNameError naming close choices otherwise."""
    return CLASSIFIERS.value(name)
