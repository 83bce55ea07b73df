"""The ``head`` family: a linear or prototype head on frozen embeddings of a backbone or a bundle's network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lablens.errors import SettingError
from lablens.infer.bundle import load_bundle, save_bundle
from lablens.models.registry import create_estimator
from lablens.models.warm_start import read_init_bundle
from lablens.train.context import FitContext

from conftest import shape_image, tiny_bundle

CPU = FitContext(device="cpu")


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.array(["disc", "ring", "square"] * n)
    return np.stack([shape_image(c, rng, 32) for c in y]), y


def test_the_prototype_head_is_the_nearest_class_mean_by_cosine(tmp_path: Path) -> None:
    X, y = _data(4, 0)
    est = create_estimator(
        "head", model_name="test_resnet", weights="scratch", image_size=32, head="prototype"
    )
    est.fit(X, y, context=CPU)
    emb = est.embed(X)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    means = np.stack([unit[y == c].mean(axis=0) for c in est.classes_])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    expected = unit @ means.T / 0.1
    assert np.allclose(est.predict_logits(X), expected, atol=1e-5)
    saved = save_bundle(tmp_path / "b", est, estimator_name="head", image_size=32, resize_mode="pad")
    again = load_bundle(saved.path).estimator
    assert np.allclose(again.predict_logits(X), expected, atol=1e-5)


def test_a_head_embeds_with_a_bundles_trained_backbone_and_predicts_without_it(tmp_path: Path) -> None:
    source, _ = tiny_bundle(tmp_path / "src")
    X, y = _data(3, 1)
    with pytest.raises(SettingError, match="model_name resnet18: leave model_name out"):
        create_estimator("head", model_name="resnet18", init=str(source), image_size=32).fit(
            X, y, context=CPU
        )
    est = create_estimator("head", init=str(source), image_size=32).fit(X, y, context=CPU)
    src = read_init_bundle(source).estimator
    expected = src.network_.eval().forward_head(
        src.network_.forward_features(torch.zeros(1, 3, 32, 32)), pre_logits=True
    )
    got = est.embedder_(torch.zeros(1, 3, 32, 32))
    assert torch.allclose(got, expected, atol=1e-6) and est.weights_source_.startswith("bundle:")
    saved = save_bundle(tmp_path / "h", est, estimator_name="head", image_size=32, resize_mode="pad")
    for f in source.iterdir():
        f.unlink()  # the head's bundle holds its embedding network itself
    assert np.allclose(load_bundle(saved.path).estimator.predict_proba(X), est.predict_proba(X), atol=1e-6)


def test_a_bundle_without_a_network_cannot_embed(tmp_path: Path) -> None:
    source, _ = tiny_bundle(tmp_path / "src", model="handcrafted")
    X, y = _data(2, 2)
    with pytest.raises(SettingError, match="has no network to start from"):
        create_estimator("head", init=str(source), image_size=32).fit(X, y, context=CPU)
