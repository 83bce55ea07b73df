"""One scikit-learn-style check suite over every registry: estimators, feature extractors, field detectors.

Each registered *family* is checked once with a tiny configuration (16 timm names share the ``deep`` family and
are not retrained); a family registered without a configuration here fails the suite, so none can slip past it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone

from lablens.features.registry import create_extractor, list_extractors
from lablens.fields.detection import create_detector, list_detectors
from lablens.infer.bundle import load_bundle, save_bundle
from lablens.models.classical import FeatureClassifier
from lablens.models.deep import DeepClassifier
from lablens.models.head import HeadClassifier
from lablens.models.mil import MILClassifier
from lablens.models.multitask import MultiTaskClassifier
from lablens.models.registry import create_estimator, get_spec, list_estimators, list_families
from lablens.params import ParamError
from lablens.train.context import FitContext

from conftest import shape_image

CLASSES = ("disc", "ring", "square")
CPU = FitContext(device="cpu")

#: one tiny configuration per estimator family (registry name, parameters)
FAMILIES: dict[type, tuple[str, dict[str, Any]]] = {
    DeepClassifier: (
        "deep",
        dict(model_name="test_resnet", image_size=32, epochs=2, batch_size=6, augment=None, patience=None),
    ),
    MultiTaskClassifier: (
        "multitask",
        dict(
            model_name="test_efficientnet",
            weights="scratch",
            image_size=32,
            epochs=1,
            batch_size=6,
            tta=False,
        ),
    ),
    FeatureClassifier: ("features", dict(features="hu+colour", classifier="logreg", image_size=32)),
    HeadClassifier: ("head", dict(model_name="test_resnet", weights="scratch", image_size=32)),
    MILClassifier: (
        "mil",
        dict(
            model_name="test_resnet",
            image_size=32,
            epochs=2,
            batch_size=4,
            cells_per_bag=3,
            bags_per_sample=2,
            augment=None,
            patience=None,
        ),
    ),
}

#: one configuration per feature extractor (the spec term)
EXTRACTORS = {
    "hu": "hu",
    "zernike": "zernike[degree=4]",
    "haralick": "haralick[distances=1, levels=8]",
    "lbp": "lbp[points=8, radii=1]",
    "colour": "colour",
    "morphology": "morphology",
    "quality": "quality",
    "deep": "deep[test_resnet, weights=scratch]",
}

#: one configuration per field detector
DETECTORS = {
    "smear": dict(um_per_px=0.1, find_rbc=True),
    "nuclei": dict(um_per_px=0.2),
    "cells": dict(um_per_px=0.2),
    "learned": dict(um_per_px=0.707),  # + the bundle of the session's learned_cells fixture
}


def _images(size: int, per_class: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Shape images with labels in a shuffled, not-sorted order (``classes_`` must still come out sorted)."""
    rng = np.random.default_rng(seed)
    labels = np.array([c for c in CLASSES for _ in range(per_class)])[::-1]
    labels = labels[rng.permutation(len(labels))]
    return np.stack([shape_image(c, rng, size) for c in labels]), labels


def _inputs(family: type, size: int, per_class: int = 4, seed: int = 0) -> tuple[Any, np.ndarray]:
    """Images for image families; for bag families one bag of 2-5 images of its class per sample."""
    X, y = _images(size, per_class, seed)
    if family.capabilities.inputs == "images":
        return X, y
    rng = np.random.default_rng(seed + 10)
    bags = [np.stack([shape_image(label, rng, size) for _ in range(int(rng.integers(2, 6)))]) for label in y]
    return bags, y


def _assert_same(a: Any, b: Any) -> None:
    if isinstance(a, list):
        assert len(a) == len(b)
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v)
    else:
        np.testing.assert_array_equal(a, b)


def test_every_family_has_a_check_configuration() -> None:
    assert set(list_families()) == set(FAMILIES), "add the new family's tiny configuration to FAMILIES"
    assert set(list_extractors()) == set(EXTRACTORS)
    assert set(list_detectors()) == set(DETECTORS)


@pytest.mark.parametrize("name", list_estimators())
def test_every_registered_name_builds_with_checked_parameters(name: str) -> None:
    spec = get_spec(name)
    est = create_estimator(name)
    assert type(est) is spec.family
    assert {k: est.get_params()[k] for k in spec.fixed} == spec.fixed
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    with pytest.raises(ParamError, match="no setting 'colour'"):
        create_estimator(name, colour=1)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES), ids=lambda f: f.__name__)
def test_estimator_family_contract(family: type, tmp_path: Path) -> None:
    name, kwargs = FAMILIES[family]
    est = create_estimator(name, **kwargs)
    # __init__ stores parameters untouched, and nothing is learned before fit
    params = est.get_params()
    assert all(params[k] is v for k, v in kwargs.items())
    assert not [a for a in vars(est) if a.endswith("_") and not a.startswith("_")]
    # get_params / set_params round trip; clone of an unfitted estimator
    other = create_estimator(name).set_params(**params)
    assert other.get_params() == params
    assert clone(est).get_params() == params

    X, y = _inputs(family, kwargs["image_size"])
    Xv, yv = _inputs(family, kwargs["image_size"], per_class=2, seed=1)
    groups = np.arange(len(y)).astype(str)
    originals = copy.deepcopy((X, y, Xv, yv, groups))
    assert est.fit(X, y, Xv, yv, groups=groups, groups_val=np.arange(len(yv)).astype(str), context=CPU) is est
    for before, after in zip(originals, (X, y, Xv, yv, groups), strict=True):
        _assert_same(before, after)  # fit does not mutate its inputs
    assert list(est.classes_) == sorted(CLASSES)

    proba = est.predict_proba(X, device="cpu")
    assert proba.shape == (len(X), len(CLASSES))
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert est.predict_logits(X, device="cpu").shape == proba.shape
    assert set(est.predict(X)) <= set(CLASSES)

    # a fitted estimator clones to an unfitted twin with the same parameters
    twin = clone(est)
    assert twin.get_params() == params and not hasattr(twin, "classes_")
    # fitting again on the same data gives the same model (idempotent, seeded)
    refit = est.fit(X, y, Xv, yv, groups=groups, groups_val=np.arange(len(yv)).astype(str), context=CPU)
    np.testing.assert_allclose(refit.predict_proba(X, device="cpu"), proba, rtol=1e-4, atol=1e-5)

    # bundle round trip: the card's parameters rebuild it, predictions are identical, nothing is unpickled
    bundle = save_bundle(
        tmp_path / "b", est, estimator_name=name, image_size=kwargs["image_size"], resize_mode="pad"
    )
    loaded = load_bundle(bundle.path).estimator
    assert type(loaded) is family and loaded.typed_params() == est.typed_params()
    np.testing.assert_allclose(loaded.predict_proba(X, device="cpu"), proba, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(EXTRACTORS))
def test_feature_extractor_contract(name: str) -> None:
    ext = create_extractor(EXTRACTORS[name])
    params = ext.get_params()
    assert clone(ext).get_params() == params and clone(ext).key() == ext.key()
    assert type(ext)().set_params(**params).key() == ext.key()
    X, _ = _images(40, per_class=2)
    original = X.copy()
    assert ext.fit(X) is ext
    feats = ext.transform(X)
    np.testing.assert_array_equal(X, original)  # transform does not mutate its input
    assert feats.shape == (len(X), len(ext.feature_names())) and feats.dtype == np.float32
    assert np.isfinite(np.nan_to_num(feats, nan=0.0)).all()
    np.testing.assert_allclose(ext.transform(X), feats, rtol=1e-6)  # deterministic
    np.testing.assert_allclose(
        ext.transform(X[2:4]), feats[2:4], rtol=1e-5, atol=1e-6
    )  # per image: cacheable


def _field(name: str) -> np.ndarray:
    import cv2

    if name == "learned":  # a field like those it learned from: cytoplasmic IIF
        from lablens.phantoms import get_task

        task, rng = get_task("ana-hep2-cyto"), np.random.default_rng(11)
        img, _, truth = task.render_field("mitochondrial", rng, 320, task.sample_style(rng), 0.0)
        assert (
            abs(truth["field_um"] / 320 - DETECTORS["learned"]["um_per_px"]) < 0.05 * truth["field_um"] / 320
        )
        return img
    img = np.full((320, 320, 3), (232, 226, 214) if name == "smear" else (8, 12, 8), np.uint8)
    for k, (x, y) in enumerate([(80, 90), (220, 120), (150, 240), (260, 260)]):
        if name == "smear":
            if k == 3:
                cv2.circle(img, (x, y), 60, (205, 150, 150), -1)  # a red cell under the last white cell
            cv2.circle(img, (x, y), 38, (200, 190, 215), -1)
            cv2.circle(img, (x, y), 26, (105, 80, 190), -1)
        else:
            cv2.circle(img, (x, y), 28, (20, 150 + 20 * k, 20), -1)
    return img


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_field_detector_contract(name: str, request: pytest.FixtureRequest) -> None:
    given = dict(DETECTORS[name])
    if name == "learned":
        given["bundle"] = str(request.getfixturevalue("learned_cells"))
    det = create_detector(name, **given)
    params = det.get_params()
    assert clone(det).get_params() == params
    assert type(det)().set_params(**params).get_params() == params
    img = _field(name)
    original = img.copy()
    found = det.detect(img)
    np.testing.assert_array_equal(img, original)  # detect does not mutate its input
    assert found, f"{name} found nothing on a clear field"
    for d in found:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
        assert 0.0 <= d.score <= 1.0 and isinstance(d.label, str)
    rebuilt = create_detector(name, **params).detect(img)
    assert [(d.label, d.box) for d in rebuilt] == [(d.label, d.box) for d in found]  # deterministic
    blank = np.full_like(img, img[0, 0])
    assert isinstance(det.detect(blank), list)
