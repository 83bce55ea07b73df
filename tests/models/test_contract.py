"""One contract, run over every registered estimator (the scikit-learn estimator contract + bundle state)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from lablens.registry import accepted_parameters, create_estimator, get_factory, list_estimators

from conftest import shape_image

CLASSES = ("disc", "ring", "square")


def _data(size: int, per_class: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.array([c for c in CLASSES for _ in range(per_class)])
    images = np.stack([shape_image(c, rng, size) for c in labels])
    return images, labels


def _tiny_kwargs(name: str) -> dict:
    if "epochs" not in accepted_parameters(name):  # a features + classifier pipeline
        return dict(image_size=48, seed=0, threads=1)
    size = 80 if name == "inception_v3" else 48
    return dict(image_size=size, epochs=1, batch_size=6, augment=None, device="cpu", patience=None, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_estimators())
def test_estimator_contract(name: str) -> None:
    kwargs = _tiny_kwargs(name)
    est = create_estimator(name, **kwargs)
    # __init__ stores parameters untouched
    params = est.get_params()
    for k, v in kwargs.items():
        assert params[k] is v or params[k] == v
    assert not [a for a in vars(est) if a.endswith("_") and not a.startswith("_")], (
        "learned attributes before fit"
    )
    X, y = _data(kwargs["image_size"])
    assert est.fit(X, y, X[:3], y[:3]) is est
    assert list(est.classes_) == list(CLASSES)
    proba = est.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert set(est.predict(X)) <= set(CLASSES)
    assert est.predict_logits(X).shape == (len(X), 3)
    # clone gives an unfitted twin with equal parameters
    twin = clone(est)
    assert twin.get_params().keys() == params.keys()
    assert not hasattr(twin, "classes_")
    # export/import reproduces predictions exactly, without pickle
    tensors, meta = est.export_state()
    rebuilt = create_estimator(name, **kwargs).import_state(tensors, meta)
    np.testing.assert_allclose(rebuilt.predict_proba(X), proba, rtol=1e-5, atol=1e-6)


def test_registry_has_study_models() -> None:
    names = set(list_estimators())
    for required in (
        "resnet18",
        "resnet34",
        "vgg16",
        "inception_v3",
        "densenet121",
        "efficientnet_b0",
        "efficientnet_b7",
        "efficientnet_lite0",
        "features",
        "handcrafted",
        "cnn_features",
        "blur_level",
    ):
        assert required in names


def test_any_timm_name_resolves_and_unknown_name_explains() -> None:
    est = get_factory("test_efficientnet")()
    assert est.model_name == "test_efficientnet"
    with pytest.raises(KeyError, match="unknown model"):
        get_factory("resnet9000")


def test_rejects_non_image_input() -> None:
    est = create_estimator("test_resnet", image_size=32, epochs=1)
    with pytest.raises(ValueError, match="uint8 image array"):
        est.fit(np.zeros((4, 32, 32)), np.array([0, 1, 0, 1]))
