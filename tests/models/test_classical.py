"""Features + classifier estimators: every classifier, exact bundle round trip, safe loading, grouped search."""

from __future__ import annotations

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from lablens.errors import UnknownNameError
from lablens.models.classical import FeatureClassifier
from lablens.models.classifiers import CLASSIFIERS, classifier_spec
from lablens.models.skops_state import UntrustedStateError, dump_pipeline, load_pipeline

from conftest import shape_image

CLASSES = ("disc", "ring", "square")


def _data(per_class: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.array([c for c in CLASSES for _ in range(per_class)])
    return np.stack([shape_image(c, rng, 48) for c in y]), y


@pytest.mark.parametrize("classifier", sorted(CLASSIFIERS))
def test_every_classifier_learns_shapes_and_round_trips_exactly(classifier: str) -> None:
    X, y = _data()
    Xt, yt = _data(per_class=6, seed=1)
    est = FeatureClassifier(features="hu+morphology+lbp", classifier=classifier, image_size=48, seed=0)
    assert est.fit(X, y) is est
    proba = est.predict_proba(Xt)
    assert proba.shape == (len(Xt), 3) and np.allclose(proba.sum(1), 1.0)
    assert (est.predict(Xt) == yt).mean() >= 0.6, classifier  # chance is 0.33
    tensors, meta = est.export_state()
    rebuilt = clone(est).import_state(tensors, meta)
    np.testing.assert_array_equal(rebuilt.predict_proba(Xt), proba)


def test_tree_models_report_importances_by_feature_name() -> None:
    X, y = _data()
    est = FeatureClassifier(features="hu+morphology", classifier="rf", image_size=48).fit(X, y)
    imp = est.feature_importances()
    assert set(imp) == set(est.feature_names_) and sum(imp.values()) == pytest.approx(1.0)
    assert (
        FeatureClassifier(features="hu", classifier="logreg", image_size=48).fit(X, y).feature_importances()
        is None
    )


def test_unknown_classifier_lists_the_choices() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown classifier 'catboost'; did you mean xgboost\?"):
        classifier_spec("catboost")
    with pytest.raises(UnknownNameError, match="did you mean lightgbm"):
        classifier_spec("lightgmb")
    assert classifier_spec("svm") is CLASSIFIERS.value("svm_rbf")


def _double(x: np.ndarray) -> np.ndarray:
    return 2 * x


def test_stored_pipeline_with_an_untrusted_type_is_refused() -> None:
    bad = Pipeline([("f", FunctionTransformer(_double))])  # a function reference: code, not data
    with pytest.raises(UntrustedStateError, match="_double"):
        load_pipeline(dump_pipeline(bad.fit(np.zeros((2, 2)))))


def test_search_inner_folds_keep_each_group_on_one_side() -> None:
    X, y = _data(per_class=12)
    groups = np.repeat(np.arange(12), 3)  # 3 crops per patient
    est = FeatureClassifier(features="hu+morphology", classifier="logreg", image_size=48, search=True)
    est.fit(X, y, groups=groups)
    folds = est._inner_folds(np.searchsorted(CLASSES, y), groups)
    assert len(folds) == 3
    for train, val in folds:
        assert not set(groups[train]) & set(groups[val])
    assert set(est.best_params_) == {"clf__C"}


def test_validation_crops_join_the_training_data() -> None:
    X, y = _data()
    est = FeatureClassifier(features="hu", classifier="knn", image_size=48).fit(
        X[:20], y[:20], X[20:], y[20:]
    )
    assert est.n_train_ == 30 and list(est.classes_) == list(CLASSES)


def test_skops_payload_holds_no_pickle_opcodes_for_trees() -> None:
    X, y = _data()
    est = FeatureClassifier(features="hu", classifier="lightgbm", image_size=48).fit(X, y)
    raw = dump_pipeline(est.pipeline_)
    assert not [
        t
        for t in sio.get_untrusted_types(data=raw)
        if not t.startswith(("sklearn.", "lightgbm.", "collections."))
    ]
