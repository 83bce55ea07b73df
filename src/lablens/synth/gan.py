"""A class-conditional GAN as an estimator: ``fit(X, y, groups=…)`` on the training partition, ``sample`` images,
``save``/``load`` as a bundle (safetensors + card, no pickle).

Training runs on the one engine (:class:`~lablens.train.tasks.gan.GANTask`). A slice of the given images, held
out by group, only picks the epoch (KID of generated vs held-out images). The workflow records the sha256 of
every image given to ``fit`` with each synthetic set (``sources.csv``), so a run can refuse a leak.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.model_selection import GroupShuffleSplit

from lablens.config import TrainingSettings
from lablens.infer.bundle import BUNDLE_SCHEMA, BundleError, read_bundle_files, write_bundle_files
from lablens.models.gan_net import Discriminator, Generator
from lablens.synth.fidelity import kid
from lablens.synth.memorisation import pixel_features
from lablens.train.context import FitContext
from lablens.train.tasks.gan import GANTask, sample_images
from lablens.train.trainer import Trainer

NAME = "gan"
#: images held out (by group) to pick the epoch, when there are enough groups
SELECTION_FRACTION = 0.1


def imagenet_features(image_size: int) -> Any:
    """Pooled EfficientNet-Lite0 ImageNet features (offline weights): what KID compares during training."""
    from lablens.features.deep import DeepFeatures

    extractor = DeepFeatures(
        "efficientnet_lite0", weights="imagenet", image_size=max(image_size, 64), device="cpu"
    )
    return extractor.transform


class GANGenerator(BaseEstimator):
    """A FastGAN-style class-conditional generator with DiffAugment (see :mod:`lablens.models.gan_net`).

    Args:
        image_size: side of the generated images (a power of two, 16–256).
        width: channel width of both networks (32 suits a CPU at 64 px).
        z_dim: noise size.
        epochs, batch_size, lr, seed: training (class-balanced batches).
        kid_features: ``imagenet`` (EfficientNet-Lite0, offline) or ``pixels`` — what picks the epoch.
    """

    def __init__(
        self,
        image_size: int = 64,
        width: int = 32,
        z_dim: int = 128,
        epochs: int = 60,
        batch_size: int = 32,
        lr: float = 2e-4,
        seed: int = 0,
        kid_features: str = "imagenet",
    ) -> None:
        self.image_size = image_size
        self.width = width
        self.z_dim = z_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.kid_features = kid_features

    def _networks(self, n_classes: int) -> tuple[Generator, Discriminator]:
        torch.manual_seed(self.seed)
        return (
            Generator(n_classes, self.image_size, self.z_dim, self.width),
            Discriminator(n_classes, self.image_size, self.width),
        )

    def fit(
        self,
        X: np.ndarray,
        y: Sequence[str],
        *,
        groups: Sequence[str] | None = None,
        context: FitContext | None = None,
    ) -> GANGenerator:
        """Learn to generate images like ``X`` (``N×S×S×3`` uint8 at ``image_size``) for each class of ``y``."""
        X, y = np.asarray(X), np.asarray(y).astype(str)
        if X.ndim != 4 or X.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(
                f"the GAN trains on {self.image_size}×{self.image_size} images, got {X.shape[1:3]}"
            )
        if self.kid_features not in ("imagenet", "pixels"):
            raise ValueError(f"kid_features {self.kid_features!r}: choose imagenet or pixels")
        self.classes_ = np.array(sorted(set(y)))
        y_idx = np.searchsorted(self.classes_, y)
        groups = np.asarray(groups).astype(str) if groups is not None else np.arange(len(y)).astype(str)
        train, held = np.arange(len(y)), np.zeros(0, np.int64)
        if len(set(groups)) >= 10:
            split = GroupShuffleSplit(n_splits=1, test_size=SELECTION_FRACTION, random_state=self.seed)
            train, held = next(split.split(X, y, groups))
        gen, disc = self._networks(len(self.classes_))
        features = imagenet_features(self.image_size) if self.kid_features == "imagenet" else pixel_features
        task = GANTask(gen, disc, features, seed=self.seed, kid=lambda a, b: kid(a, b, subsets=20).mean)
        settings = TrainingSettings(
            epochs=self.epochs,
            batch_size=min(self.batch_size, len(train)),
            lr=self.lr,
            weight_decay=0.0,
            warmup_epochs=0.0,
            imbalance="sampler",  # class-balanced batches: the rare class is what the generator is for
            monitor="loss",
            patience=None,
            ema_decay=0.999,
            channels_last=False,
            augment=None,  # DiffAugment inside the task
            seed=self.seed,
        )
        result = Trainer(settings, context).fit(
            task, X[train], y_idx[train], X[held] if len(held) else None, y_idx[held] if len(held) else None
        )
        self.generator_ = task.model.cpu().eval()
        self.history_, self.best_epoch_, self.resumed_from_ = (
            result.history,
            result.best_epoch,
            result.resumed_from,
        )
        return self

    def sample(self, labels: Sequence[str], seed: int) -> np.ndarray:
        """Images of the given class names, ``N×S×S×3`` uint8; the same ``seed`` gives the same images."""
        unknown = sorted(set(labels) - set(self.classes_))
        if unknown:
            raise ValueError(
                f"class {unknown[0]!r} is not one the generator learned ({', '.join(self.classes_)})"
            )
        return sample_images(self.generator_, np.searchsorted(self.classes_, np.asarray(labels)), seed)

    # -- bundle -------------------------------------------------------------------------------------------
    def save(self, out_dir: str | Path, training: dict[str, Any] | None = None) -> str:
        """Write the generator as a bundle; return its hash."""
        card = {
            "schema": BUNDLE_SCHEMA,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "generator": {"name": NAME, "params": self.get_params(), "classes": self.classes_.tolist()},
            "training": {"best_epoch": self.best_epoch_, "history": self.history_, **(training or {})},
        }
        _, digest = write_bundle_files(out_dir, self.generator_.state_dict(), card)
        return digest

    @classmethod
    def load(cls, path: str | Path) -> tuple[GANGenerator, str]:
        """A saved generator and its bundle hash; :class:`BundleError` says why a path is not one."""
        card, tensors, digest = read_bundle_files(path)
        info = card.get("generator") or {}
        if info.get("name") != NAME:
            raise BundleError(f"{path}: not a GAN generator bundle (lablens synthesize writes them)")
        est = cls(**info["params"])
        est.classes_ = np.array(info["classes"])
        gen, _ = est._networks(len(est.classes_))
        try:
            gen.load_state_dict(tensors)
        except RuntimeError as exc:
            raise BundleError(f"{path}: the weights do not fit the recorded generator ({exc})") from None
        est.generator_ = gen.eval()
        est.history_, est.best_epoch_ = (
            card["training"].get("history", []),
            card["training"].get("best_epoch"),
        )
        return est, digest
