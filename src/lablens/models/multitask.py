"""Multi-task classifier (DeepMT-ND's design): diagnose, grade blur and de-blur with one shared encoder.

Registered as ``multitask``. It trains from clean labelled images alone: blur is synthesised on the fly by
the degradation protocol (:mod:`lablens.quality.degrade`), so the blur level and the clean image are known
targets. ``quality_weight=0`` / ``deblur_weight=0`` switch the auxiliary heads off (ablation); with both
off it is a single-task classifier trained with blur augmentation.

Beyond the estimator contract it offers ``predict_quality`` (expected blur level per image, used by the
predictor's quality gate), ``deblur`` (restored uint8 images) and ``outputs`` (all heads at once, optionally
under given degradation records, for blur studies).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lablens.config import AugmentConfig
from lablens.models.base import ImageClassifier
from lablens.models.multitask_net import MultiTaskNet
from lablens.models.weights import build_network
from lablens.quality.degrade import Degradation, parse_kinds, parse_levels
from lablens.registry import register
from lablens.train.loop import resolve_device
from lablens.train.multitask_loop import MultiTaskSettings, fit_multitask, predict_outputs


@register("multitask")
class MultiTaskClassifier(ImageClassifier):
    """A timm encoder with classification, blur-level and de-blurring heads, trained under synthetic blur.

    Args:
        model_name: a timm CNN with ``forward_intermediates`` (EfficientNet, ResNet, DenseNet …).
        weights: ``scratch``, ``imagenet`` or a weights file (see :mod:`lablens.models.weights`).
        levels: blur levels trained on, e.g. ``"0-4"`` (``"0"``: clean images only, a plain classifier).
        val_levels: levels the validation images are degraded at for epoch selection (None: ``levels``).
        kinds: blur kinds drawn per image; ``noise``: largest sensor-noise sd of blurred images.
        blur_prob: share of training images that are blurred (the rest stay clean).
        quality_weight, deblur_weight: loss weights of the auxiliary tasks (0 switches a head off).
        Other arguments: as :class:`~lablens.models.deep.DeepClassifier`.
    """

    def __init__(
        self,
        model_name: str = "efficientnet_lite0",
        weights: str = "imagenet",
        image_size: int = 96,
        resize_mode: str = "pad",
        drop_rate: float = 0.2,
        epochs: int = 20,
        batch_size: int = 32,
        lr: float | None = None,
        weight_decay: float = 0.05,
        warmup_epochs: float = 1.0,
        label_smoothing: float = 0.0,
        imbalance: str = "weighted",
        focal_gamma: float = 2.0,
        patience: int | None = 8,
        augment: dict | bool | None = None,
        levels: str = "0-4",
        val_levels: str | None = None,
        kinds: str = "defocus,gaussian,motion",
        noise: float = 0.01,
        blur_prob: float = 0.8,
        quality_weight: float = 0.5,
        deblur_weight: float = 1.0,
        device: str = "auto",
        amp: bool = True,
        seed: int = 0,
        threads: int | None = None,
        eval_batch_size: int = 64,
        progress: Any = None,
    ) -> None:
        self.model_name = model_name
        self.weights = weights
        self.image_size = image_size
        self.resize_mode = resize_mode
        self.drop_rate = drop_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.label_smoothing = label_smoothing
        self.imbalance = imbalance
        self.focal_gamma = focal_gamma
        self.patience = patience
        self.augment = augment
        self.levels = levels
        self.val_levels = val_levels
        self.kinds = kinds
        self.noise = noise
        self.blur_prob = blur_prob
        self.quality_weight = quality_weight
        self.deblur_weight = deblur_weight
        self.device = device
        self.amp = amp
        self.seed = seed
        self.threads = threads
        self.eval_batch_size = eval_batch_size
        self.progress = progress

    # -- training -----------------------------------------------------------------------------------
    def _settings(self) -> MultiTaskSettings:
        pretrained = self.weights_source_ != "scratch"
        if self.augment is False:
            augment = None
        elif self.augment is None or self.augment is True:
            augment = AugmentConfig(blur_prob=0.0)  # blur comes from the degradation protocol instead
        else:
            augment = AugmentConfig(**self.augment) if isinstance(self.augment, dict) else self.augment
        return MultiTaskSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr if self.lr is not None else (1e-3 if pretrained else 2e-3),
            weight_decay=self.weight_decay,
            warmup_epochs=self.warmup_epochs,
            label_smoothing=self.label_smoothing,
            imbalance=self.imbalance,
            focal_gamma=self.focal_gamma,
            patience=self.patience,
            augment=augment,
            device=self.device,
            amp=self.amp,
            seed=self.seed,
            mean=self.mean_,
            std=self.std_,
            eval_batch_size=self.eval_batch_size,
            levels=parse_levels(self.levels),
            val_levels=parse_levels(self.val_levels) if self.val_levels is not None else None,
            kinds=parse_kinds(self.kinds),
            noise=self.noise,
            blur_prob=self.blur_prob,
            quality_weight=self.quality_weight,
            deblur_weight=self.deblur_weight,
        )

    def _build(self, n_classes: int, weights: str, arch: str | None = None) -> tuple[MultiTaskNet, Any]:
        # ``arch`` (from a bundle) can differ from model_name: offline ImageNet weights pick their own variant
        backbone, info = build_network(arch or self.model_name, weights, n_classes, self.drop_rate)
        net = MultiTaskNet(
            backbone, self.image_size, quality=self.quality_weight > 0, deblur=self.deblur_weight > 0
        )
        return net, info

    def fit(
        self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None
    ) -> MultiTaskClassifier:
        X = self._sized(self._check_images(X))
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        yv = None
        if X_val is not None and len(X_val):
            X_val = self._sized(self._check_images(X_val))
            unknown = set(np.unique(y_val)) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(f"validation labels not seen in training: {sorted(unknown)}")
            yv = np.searchsorted(self.classes_, np.asarray(y_val))
        if self.threads:
            torch.set_num_threads(int(self.threads))
        torch.manual_seed(self.seed)
        net, info = self._build(len(self.classes_), self.weights)
        self.arch_, self.mean_, self.std_, self.weights_source_ = (
            info.arch,
            info.mean,
            info.std,
            info.weights_source,
        )
        result = fit_multitask(
            net,
            X,
            np.searchsorted(self.classes_, y),
            X_val,
            yv,
            n_classes=len(self.classes_),
            settings=self._settings(),
            progress=self.progress,
        )
        self.network_ = net.to("cpu").eval()
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        return self

    # -- inference ----------------------------------------------------------------------------------
    def outputs(
        self, X: np.ndarray, records: Sequence[Degradation] | None = None, want_deblurred: bool = False
    ) -> dict[str, np.ndarray]:
        """All heads for ``X`` (degraded first by ``records`` when given): logits, level, deblurred."""
        X = self._sized(self._check_images(X))
        device = resolve_device(self.device)
        net = self.network_.to(device)
        try:
            return predict_outputs(
                net,
                X,
                mean=self.mean_,
                std=self.std_,
                device=device,
                batch_size=self.eval_batch_size,
                amp=self.amp,
                records=records,
                want_deblurred=want_deblurred,
            )
        finally:
            self.network_ = net.to("cpu")

    def predict_logits(self, X: np.ndarray) -> np.ndarray:
        return self.outputs(X)["logits"]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return torch.softmax(torch.from_numpy(self.predict_logits(X)), dim=1).numpy()

    def predict_quality(self, X: np.ndarray) -> np.ndarray:
        """Predicted blur level per image (the quality head); raises when the head was switched off."""
        out = self.outputs(X)
        if "level" not in out:
            raise ValueError("this multitask model was trained without its quality head (quality_weight=0)")
        return out["level"]

    def deblur(self, X: np.ndarray) -> np.ndarray:
        """Restored ``N×S×S×3`` uint8 images (the input itself when the de-blurring head is off)."""
        return self.outputs(X, want_deblurred=True)["deblurred"]

    # -- bundles ------------------------------------------------------------------------------------
    def export_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.network_.state_dict().items()}
        meta = {
            "arch": self.arch_,
            "classes": [str(c) for c in self.classes_],
            "mean": list(self.mean_),
            "std": list(self.std_),
            "weights_source": self.weights_source_,
            "best_epoch": self.best_epoch_,
            "heads": ["classification"]
            + (["quality"] if self.quality_weight > 0 else [])
            + (["deblur"] if self.deblur_weight > 0 else []),
        }
        return tensors, meta

    def import_state(self, tensors: dict[str, Any], meta: dict[str, Any]) -> MultiTaskClassifier:
        self.classes_ = np.asarray(meta["classes"])
        self.arch_ = meta["arch"]
        self.mean_, self.std_ = tuple(meta["mean"]), tuple(meta["std"])
        self.weights_source_ = meta.get("weights_source", "bundle")
        self.best_epoch_ = meta.get("best_epoch", 0)
        self.history_ = []
        net, _ = self._build(len(self.classes_), "scratch", arch=self.arch_)
        missing, unexpected = net.load_state_dict(
            {k: torch.as_tensor(v) for k, v in tensors.items()}, strict=False
        )
        if missing or unexpected:
            raise ValueError(
                f"bundle weights do not fit multitask {self.arch_}: {len(missing)} missing, "
                f"{len(unexpected)} unexpected tensors"
            )
        self.network_ = net.eval()
        return self
