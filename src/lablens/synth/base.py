"""What every image generator shares: the estimator contract, the hold-out that picks the epoch, sampling by
class name, and the bundle (safetensors + card, no pickle).

A family (GAN, diffusion) subclasses :class:`ImageGenerator` and supplies three things: its network
(:meth:`~ImageGenerator.network`), the engine task that trains it (:meth:`~ImageGenerator.task`) with its
training settings, and how a trained network turns seeded noise into images (:meth:`~ImageGenerator.draw`).
Training always runs on the one engine (:class:`~lablens.train.trainer.Trainer`).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.model_selection import GroupShuffleSplit

from lablens.config import TrainingSettings
from lablens.errors import SettingError
from lablens.infer.bundle import BUNDLE_SCHEMA, BundleError, read_bundle_files, write_bundle_files
from lablens.synth.features import imagenet_features
from lablens.synth.memorisation import pixel_features
from lablens.train.context import FitContext
from lablens.train.tasks.base import Task
from lablens.train.trainer import Trainer

#: images held out (by group) to pick the epoch, when there are enough groups
SELECTION_FRACTION = 0.1
#: fewest groups for a hold-out; below it every image trains and the last epoch is kept
MIN_GROUPS_FOR_HOLDOUT = 10
KID_FEATURES = ("imagenet", "pixels")


def holdout_rows(y: np.ndarray, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows that train and rows held out to pick the epoch: a tenth of the groups, drawn among the images of
    classes with at least :data:`MIN_GROUPS_FOR_HOLDOUT` groups. A rarer class — usually the one the generator
    is for — gives every image to training; with too few groups nothing is held out (the last epoch is kept)."""
    rows = np.arange(len(y))
    eligible = [c for c in np.unique(y) if len(set(groups[y == c])) >= MIN_GROUPS_FOR_HOLDOUT]
    pool = rows[np.isin(y, eligible)]
    if len(set(groups[pool])) < MIN_GROUPS_FOR_HOLDOUT:
        return rows, np.zeros(0, np.int64)
    split = GroupShuffleSplit(n_splits=1, test_size=SELECTION_FRACTION, random_state=seed)
    _, held_local = next(split.split(pool, groups=groups[pool]))
    held = pool[held_local]
    return np.setdiff1d(rows, held), held


def generator_settings(
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    *,
    patience: int | None = None,
    warmup_epochs: float = 0.0,
    grad_clip: float | None = None,
) -> TrainingSettings:
    """Engine settings every generator shares: class-balanced batches (the rare class is what a generator is
    for), EMA weights, no weight decay, the epoch picked by ``val_loss``, augmentation inside the task."""
    return TrainingSettings(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=0.0,
        warmup_epochs=warmup_epochs,
        imbalance="sampler",
        monitor="loss",
        patience=patience,
        ema_decay=0.999,
        channels_last=False,
        augment=None,
        grad_clip=grad_clip,
        seed=seed,
    )


class ImageGenerator(BaseEstimator):
    """Base of the class-conditional generators: ``fit(X, y, groups=…)``, ``sample(labels, seed)``, bundles.

    Subclasses store their parameters in ``__init__`` (``image_size``, ``seed`` and ``kid_features`` at least)
    and set ``name``, the registry and bundle name.
    """

    name: ClassVar[str]
    image_size: int
    seed: int
    kid_features: str

    # -- what a family supplies ---------------------------------------------------------------------------
    def network(self, n_classes: int) -> torch.nn.Module:  # pragma: no cover - abstract
        """The network that generates (freshly initialised from ``seed``); the bundle holds its weights."""
        raise NotImplementedError

    def task(
        self, n_classes: int, features: Any, x_train: np.ndarray
    ) -> tuple[Task, TrainingSettings]:  # pragma: no cover - abstract
        """The engine task that trains :meth:`network` (``features`` embeds images for validation) and its
        training settings."""
        raise NotImplementedError

    def draw(self, net: torch.nn.Module, labels: np.ndarray, seed: int) -> np.ndarray:  # pragma: no cover
        """``N×S×S×3`` uint8 images of class indices ``labels`` from ``net``; the same seed, the same images."""
        raise NotImplementedError

    # -- the estimator ------------------------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        y: Sequence[str],
        *,
        groups: Sequence[str] | None = None,
        context: FitContext | None = None,
    ) -> ImageGenerator:
        """Learn to generate images like ``X`` (``N×S×S×3`` uint8 at ``image_size``) for each class of ``y``.

        Images held out by :func:`holdout_rows` pick the epoch; they never train.
        """
        X, y = np.asarray(X), np.asarray(y).astype(str)
        if X.ndim != 4 or X.shape[1:3] != (self.image_size, self.image_size):
            raise SettingError(
                f"the {self.name} generator trains on {self.image_size}×{self.image_size} images, got {X.shape[1:3]}"
            )
        if self.kid_features not in KID_FEATURES:
            raise SettingError(f"kid_features {self.kid_features!r}: choose {' or '.join(KID_FEATURES)}")
        self.classes_ = np.array(sorted(set(y)))
        y_idx = np.searchsorted(self.classes_, y)
        groups = np.asarray(groups).astype(str) if groups is not None else np.arange(len(y)).astype(str)
        train, held = holdout_rows(y, groups, self.seed)
        features = imagenet_features(self.image_size) if self.kid_features == "imagenet" else pixel_features
        task, settings = self.task(len(self.classes_), features, X[train])
        has_held = len(held) > 0
        result = Trainer(settings, context).fit(
            task, X[train], y_idx[train], X[held] if has_held else None, y_idx[held] if has_held else None
        )
        self.network_ = task.model.cpu().eval()
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
            raise SettingError(
                f"class {unknown[0]!r} is not one the generator learned ({', '.join(self.classes_)})"
            )
        return self.draw(self.network_, np.searchsorted(self.classes_, np.asarray(labels)), seed)

    # -- bundle -------------------------------------------------------------------------------------------
    def save(self, out_dir: str | Path, training: dict[str, Any] | None = None) -> str:
        """Write the generator as a bundle; return its hash."""
        card = {
            "schema": BUNDLE_SCHEMA,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "generator": {"name": self.name, "params": self.get_params(), "classes": self.classes_.tolist()},
            "training": {"best_epoch": self.best_epoch_, "history": self.history_, **(training or {})},
        }
        _, digest = write_bundle_files(out_dir, self.network_.state_dict(), card)
        return digest

    @classmethod
    def from_bundle(
        cls, card: dict[str, Any], tensors: dict[str, torch.Tensor], path: str | Path
    ) -> ImageGenerator:
        """The generator a bundle's card and weights describe (see :func:`lablens.synth.registry.load_generator`)."""
        info = card["generator"]
        est = cls(**info["params"])
        est.classes_ = np.array(info["classes"])
        net = est.network(len(est.classes_))
        try:
            net.load_state_dict(tensors)
        except RuntimeError as exc:
            raise BundleError(f"{path}: the weights do not fit the recorded generator ({exc})") from None
        est.network_ = net.eval()
        est.history_, est.best_epoch_ = (
            card["training"].get("history", []),
            card["training"].get("best_epoch"),
        )
        return est

    @classmethod
    def load(cls, path: str | Path) -> tuple[ImageGenerator, str]:
        """A saved generator of this family and its bundle hash; :class:`BundleError` says why a path is not one."""
        card, tensors, digest = read_bundle_files(path)
        if (card.get("generator") or {}).get("name") != cls.name:
            raise BundleError(f"{path}: not a {cls.name} generator bundle (lablens synthesize writes them)")
        return cls.from_bundle(card, tensors, path), digest
