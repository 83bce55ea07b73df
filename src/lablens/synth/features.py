"""Feature extractors for comparing real and synthetic images (KID, FID): rows = images.

- :func:`classifier_features`: the pooled pre-logits features of a classifier trained on the lab's own images
  (a model bundle) — the features that matter for the task, and what the report uses when given one;
- :func:`imagenet_features`: EfficientNet-Lite0 with ImageNet weights (offline) — the default during training;
- :func:`inception_features`: Inception-v3 from a **local** weights file (the FID convention), never downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lablens.errors import MissingInputError, SettingError

Features = Callable[[np.ndarray], np.ndarray]


def imagenet_features(image_size: int) -> Features:
    """Pooled EfficientNet-Lite0 ImageNet features (offline weights), at ``image_size`` (64 px at least)."""
    from lablens.features.deep import DeepFeatures

    extractor = DeepFeatures(
        "efficientnet_lite0", weights="imagenet", image_size=max(image_size, 64), device="cpu"
    )
    return extractor.transform


def inception_features(weights_file: str | Path) -> Features:
    """Pooled Inception-v3 features (2048) from a local weights file, images resized to 299 px."""
    from lablens.features.deep import DeepFeatures

    if not Path(weights_file).is_file():
        raise MissingInputError(f"--inception {weights_file}: no such weights file (nothing is downloaded)")
    return DeepFeatures("inception_v3", weights=str(weights_file), image_size=299, device="cpu").transform


def classifier_features(estimator: Any, batch_size: int = 64) -> Features:
    """Pooled pre-logits features of a trained timm-based classifier (e.g. a bundle's ``estimator``)."""
    net = getattr(estimator, "network_", None)
    if net is None or not hasattr(net, "forward_head"):
        raise SettingError(
            f"a {type(estimator).__name__} has no image network to take features from; give a deep model's bundle"
        )
    mean = torch.tensor(estimator.mean_).view(1, 3, 1, 1)
    std = torch.tensor(estimator.std_).view(1, 3, 1, 1)

    def transform(images: np.ndarray) -> np.ndarray:
        X = estimator.resize_images(np.asarray(images))
        out = []
        net.eval()
        with torch.inference_mode():
            for i in range(0, len(X), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(X[i : i + batch_size])).permute(0, 3, 1, 2)
                x = (x.float() / 255 - mean) / std
                out.append(net.forward_head(net.forward_features(x), pre_logits=True).flatten(1).float())
        return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)

    return transform
