"""Deep features from a timm backbone: offline ImageNet weights, stage pooling, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lablens.features.registry import create_extractor
from lablens.nn.weights import WeightsError

from conftest import shape_image


def _images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([shape_image(c, rng, 64) for c in ("disc", "ring", "square")])


def test_lite0_imagenet_features_are_pooled_pre_logits() -> None:
    e = create_extractor("deep[efficientnet_lite0]")
    f = e.transform(_images())
    assert f.shape == (3, 1280) and len(e.feature_names()) == 1280
    assert np.isfinite(f).all() and (f.std(0) > 0).any()
    np.testing.assert_allclose(e.transform(_images()), f, rtol=1e-5, atol=1e-5)  # deterministic


def test_several_stages_are_concatenated() -> None:
    e = create_extractor("deep[resnet18, weights=scratch, stages=-2+-1]")
    f = e.transform(_images())
    assert f.shape == (3, 256 + 512)
    torch.manual_seed(123)  # the global RNG does not decide random features: the seed option does
    np.testing.assert_allclose(
        create_extractor("deep[resnet18, weights=scratch, stages=-2+-1]").transform(_images()), f, rtol=1e-5
    )


def test_hub_weights_offline_fail_with_a_clear_message() -> None:
    with pytest.raises(WeightsError):
        create_extractor("deep[resnet18]").transform(_images())
