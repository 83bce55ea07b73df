"""Deep classifiers: any timm backbone, trained end to end, behind the estimator contract.

Registered names: ``deep`` (pass ``model_name``), the reference studies' networks (``resnet18``,
``resnet34``, ``vgg16``, ``inception_v3``, ``densenet121``, ``efficientnet_b0`` … ``b7``,
``efficientnet_lite0`` … ``lite2``), and, through a fallback, any other timm model name.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from lablens.config import AugmentConfig
from lablens.models.base import ImageClassifier
from lablens.models.weights import build_network, check_model_name
from lablens.registry import register, register_fallback
from lablens.train.loop import LoopSettings, fit_network, predict_logits, resolve_device

STUDY_MODELS = (
    "resnet18",
    "resnet34",
    "vgg16",
    "inception_v3",
    "densenet121",
    *(f"efficientnet_b{i}" for i in range(8)),
    *(f"efficientnet_lite{i}" for i in range(3)),
)


@register("deep")
class DeepClassifier(ImageClassifier):
    """A timm network fine-tuned or trained from scratch on ``N×S×S×3`` uint8 images.

    Args:
        model_name: any timm model name.
        weights: ``scratch``, ``imagenet`` or a path to a weights file (see ``lablens.models.weights``).
        image_size: input side in pixels; images of another size are resized (``resize_mode``).
        lr: peak learning rate of AdamW; default 1e-3 for pretrained weights, 2e-3 from scratch.
        augment: an :class:`~lablens.config.AugmentConfig` as a dict (None → defaults; ``False`` → none).
        ema: validate, select and keep an exponential moving average of the weights (``ema_decay``).
        tta: average logits over the 8 flips/rotations of each image at validation and prediction.
        checkpoint_dir: where per-epoch checkpoints go (needed for ``resume``).
        Other arguments: see :class:`~lablens.config.TrainConfig`.
    """

    def __init__(
        self,
        model_name: str = "resnet18",
        weights: str = "scratch",
        image_size: int = 224,
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
        ema: bool = True,
        ema_decay: float = 0.999,
        monitor: str = "macro_f1",
        patience: int | None = 8,
        augment: dict | bool | None = None,
        device: str = "auto",
        amp: bool = True,
        channels_last: bool = True,
        seed: int = 0,
        threads: int | None = None,
        eval_batch_size: int = 64,
        tta: bool = True,
        checkpoint_dir: str | None = None,
        resume: bool = False,
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
        self.ema = ema
        self.ema_decay = ema_decay
        self.monitor = monitor
        self.patience = patience
        self.augment = augment
        self.device = device
        self.amp = amp
        self.channels_last = channels_last
        self.seed = seed
        self.threads = threads
        self.eval_batch_size = eval_batch_size
        self.tta = tta
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.progress = progress

    # -- training -----------------------------------------------------------------------------------
    def fit(
        self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None
    ) -> DeepClassifier:
        X = self._sized(self._check_images(X))
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        y_idx = np.searchsorted(self.classes_, y)
        yv_idx = None
        if X_val is not None and len(X_val):
            X_val = self._sized(self._check_images(X_val))
            unknown = set(np.unique(y_val)) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(f"validation labels not seen in training: {sorted(unknown)}")
            yv_idx = np.searchsorted(self.classes_, np.asarray(y_val))
        if self.threads:
            torch.set_num_threads(int(self.threads))
        torch.manual_seed(self.seed)  # network initialisation
        net, info = build_network(self.model_name, self.weights, len(self.classes_), self.drop_rate)
        self.arch_, self.mean_, self.std_, self.weights_source_ = (
            info.arch,
            info.mean,
            info.std,
            info.weights_source,
        )
        pretrained = info.weights_source != "scratch"
        settings = LoopSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr if self.lr is not None else (1e-3 if pretrained else 2e-3),
            weight_decay=self.weight_decay,
            warmup_epochs=self.warmup_epochs,
            label_smoothing=self.label_smoothing,
            imbalance=self.imbalance,
            focal_gamma=self.focal_gamma,
            ema=self.ema,
            ema_decay=self.ema_decay,
            monitor=self.monitor,
            patience=self.patience,
            augment=self._augment_config(),
            device=self.device,
            amp=self.amp,
            channels_last=self.channels_last,
            seed=self.seed,
            mean=self.mean_,
            std=self.std_,
            eval_batch_size=self.eval_batch_size,
            tta=self.tta,
        )
        result = fit_network(
            net,
            X,
            y_idx,
            X_val,
            yv_idx,
            n_classes=len(self.classes_),
            settings=settings,
            checkpoint_dir=self.checkpoint_dir,
            resume=self.resume,
            progress=self.progress,
        )
        self.network_ = net.to("cpu").eval()
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.stopped_early_ = result.stopped_early
        return self

    def _augment_config(self) -> AugmentConfig | None:
        if self.augment is False:
            return None
        if self.augment is None or self.augment is True:
            return AugmentConfig()
        if isinstance(self.augment, AugmentConfig):
            return self.augment
        return AugmentConfig(**self.augment)

    # -- inference ----------------------------------------------------------------------------------
    def predict_logits(self, X: np.ndarray) -> np.ndarray:
        X = self._sized(self._check_images(X))
        device = resolve_device(self.device)
        net = self.network_.to(device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        logits = predict_logits(
            net,
            X,
            mean=self.mean_,
            std=self.std_,
            device=device,
            batch_size=self.eval_batch_size,
            channels_last=self.channels_last,
            amp=self.amp,
            tta=self.tta,
        )
        self.network_ = net.to("cpu")
        return logits

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        logits = torch.from_numpy(self.predict_logits(X))
        return torch.softmax(logits, dim=1).numpy()

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
        }
        return tensors, meta

    def import_state(self, tensors: dict[str, Any], meta: dict[str, Any]) -> DeepClassifier:
        self.classes_ = np.asarray(meta["classes"])
        self.arch_ = meta["arch"]
        self.mean_ = tuple(meta["mean"])
        self.std_ = tuple(meta["std"])
        self.weights_source_ = meta.get("weights_source", "bundle")
        self.best_epoch_ = meta.get("best_epoch", 0)
        self.history_ = []
        net, _ = build_network(self.arch_, "scratch", len(self.classes_), self.drop_rate)
        state = {k: torch.as_tensor(v) for k, v in tensors.items()}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"bundle weights do not fit {self.arch_}: {len(missing)} missing, {len(unexpected)} unexpected tensors"
            )
        self.network_ = net.eval()
        return self


def _named(name: str) -> Any:
    return functools.partial(DeepClassifier, model_name=name)


for _name in STUDY_MODELS:
    register(_name)(_named(_name))


def _timm_fallback(name: str) -> Any:
    try:
        check_model_name(name)
    except KeyError:
        return None
    return _named(name)


register_fallback(_timm_fallback)
