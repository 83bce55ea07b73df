"""Deep classifiers: any timm backbone, trained end to end on the one training engine.

Registered names: ``deep`` (give ``model_name``), the reference studies' networks (``resnet18``, ``resnet34``,
``vgg16``, ``inception_v3``, ``densenet121``, ``efficientnet_b0`` … ``b7``, ``efficientnet_lite0`` … ``lite2``),
and, through a fallback, any other timm model name.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch

from lablens.config import NetworkSettings, TrainingSettings
from lablens.device import resolve_device
from lablens.errors import SettingError, UnknownNameError
from lablens.models.base import ImageClassifier
from lablens.models.registry import Capabilities, EstimatorSpec, register, register_fallback
from lablens.models.warm_start import read_init_bundle, warm_start
from lablens.nn.freeze import check_frozen_stages, freeze_stages
from lablens.nn.network import run_network
from lablens.nn.weights import build_network, check_model_name, same_architecture
from lablens.params import FamilyParams, params_init
from lablens.train.context import FitContext
from lablens.train.imbalance import ClassificationLoss, balanced_class_weights
from lablens.train.tasks import ClassificationTask
from lablens.train.trainer import Trainer

STUDY_MODELS = (
    "resnet18",
    "resnet34",
    "vgg16",
    "inception_v3",
    "densenet121",
    *(f"efficientnet_b{i}" for i in range(8)),
    *(f"efficientnet_lite{i}" for i in range(3)),
)


class DeepParams(FamilyParams, NetworkSettings, TrainingSettings):
    """A timm network (``model_name``, any timm name) with its initial weights and input size, and every
    training-engine setting (see :class:`~lablens.config.TrainingSettings`). ``lr`` None: 1e-3 for pretrained
    weights, 2e-3 from scratch."""

    model_name: str = "resnet18"
    resize_mode: Literal["pad", "squash", "crop"] = "pad"


def default_lr(lr: float | None, weights_source: str) -> float:
    """The learning rate to use: the given one, else 1e-3 for pretrained weights and 2e-3 from scratch."""
    if lr is not None:
        return float(lr)
    return 1e-3 if weights_source != "scratch" else 2e-3


class NetworkClassifier(ImageClassifier):
    """What every family of one timm-based network shares: label handling, prediction, bundle state.

    Subclasses build the network (:meth:`_build`) and the training task (:meth:`_task`).
    """

    network_: torch.nn.Module

    def _build(
        self, p: Any, n_classes: int, weights: str, arch: str | None = None
    ) -> tuple[torch.nn.Module, Any]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _task(self, p: Any, net: torch.nn.Module, y_idx: np.ndarray) -> Any:
        raise NotImplementedError  # pragma: no cover - abstract

    def backbone_of(self, net: torch.nn.Module) -> torch.nn.Module:
        """The timm backbone (encoder) inside ``net``: what a warm start copies whole."""
        return net

    def head_of(self, net: torch.nn.Module) -> torch.nn.Module:
        """The class head inside ``net`` (one row per class): what a warm start maps by class name."""
        return net.get_classifier()

    #: training settings the family always uses, whatever the parameters say
    _settings_fixed: ClassVar[dict[str, Any]] = {}

    def _inputs(self, X: Any, what: str = "X") -> Any:
        """``X`` as the family trains on it (images at ``image_size``)."""
        return self.resize_images(X)

    def _training_items(self, p: Any, X: Any, y_idx: np.ndarray) -> tuple[Any, np.ndarray]:
        """The items the engine trains on and their labels (the images themselves)."""
        return X, y_idx

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        *,
        groups: np.ndarray | None = None,
        groups_val: np.ndarray | None = None,
        context: FitContext | None = None,
    ) -> NetworkClassifier:
        p = self.typed_params()
        X = self._inputs(X)
        X_val = self._inputs(X_val, "X_val") if X_val is not None and len(X_val) else None
        y_idx, yv_idx = self._encode_labels(y, y_val if X_val is not None else None)
        X, y_idx = self._training_items(p, X, y_idx)
        torch.manual_seed(p.seed)  # network initialisation
        net = self._initial_network(p)
        self.frozen_stages_ = check_frozen_stages(p.frozen_stages, self.weights_source_)
        freeze_stages(self.backbone_of(net), self.frozen_stages_)
        settings = TrainingSettings.model_validate(p.model_dump(include=set(TrainingSettings.model_fields)))
        settings = settings.model_copy(
            update={"lr": default_lr(p.lr, self.weights_source_), **self._settings_fixed}
        )
        result = Trainer(settings, context).fit(self._task(p, net, y_idx), X, y_idx, X_val, yv_idx)
        self.network_ = net.to("cpu").eval()
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.stopped_early_ = result.stopped_early
        self.steps_, self.passes_ = result.steps, result.passes
        return self

    def _initial_network(self, p: Any) -> torch.nn.Module:
        """The network training starts from: built with ``weights``, or warm-started from the ``init`` bundle."""
        self.init_ = None
        if p.init is None:
            net, info = self._build(p, len(self.classes_), p.weights)
            self.arch_, self.mean_, self.std_ = info.arch, info.mean, info.std
            self.weights_source_ = info.weights_source
            return net
        if p.weights != "scratch":
            raise SettingError(
                f"model.init {p.init} and model.weights {p.weights!r}: a warm start takes its weights from the "
                "bundle; give one of them"
            )
        source = read_init_bundle(p.init)
        if not same_architecture(p.model_name, source.arch):
            raise SettingError(
                f"model.init {source.path}: the bundle is {source.arch}, this model {p.model_name}; a warm start "
                "needs the same architecture"
            )
        net, _ = self._build(p, len(self.classes_), "scratch", arch=source.arch)
        classes = [str(c) for c in self.classes_]
        self.init_ = warm_start(net, self, classes, source, int(p.image_size))
        self.arch_, self.mean_, self.std_ = source.arch, source.estimator.mean_, source.estimator.std_
        self.weights_source_ = f"bundle:{source.hash[:16]}"
        return net

    def _loss(self, p: Any, y_idx: np.ndarray) -> ClassificationLoss:
        weights = balanced_class_weights(y_idx, len(self.classes_))
        return ClassificationLoss(p.imbalance, weights, p.focal_gamma, p.label_smoothing)

    # -- inference ----------------------------------------------------------------------------------------
    def outputs(
        self,
        X: np.ndarray,
        *,
        device: str | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> dict[str, np.ndarray]:
        """Every output of the network for ``X`` (``kwargs`` go to :func:`~lablens.nn.network.run_network`)."""
        X = self.resize_images(X)
        dev = resolve_device(device or "auto")
        net = self.network_.to(dev)
        try:
            return run_network(
                net,
                X,
                mean=self.mean_,
                std=self.std_,
                device=dev,
                batch_size=batch_size or 64,
                channels_last=bool(self.channels_last),  # type: ignore[attr-defined]
                amp=bool(self.amp),  # type: ignore[attr-defined]
                **{"tta": bool(self.tta), "tta_margin": self.tta_margin, **kwargs},  # type: ignore[attr-defined]
            )
        finally:
            self.network_ = net.to("cpu")

    def predict_logits(
        self, X: np.ndarray, *, device: str | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        return self.outputs(X, device=device, batch_size=batch_size)["logits"]

    def embed(self, X: np.ndarray, *, device: str | None = None, batch_size: int | None = None) -> np.ndarray:
        """The pooled features the class head reads (``N×D`` float32, one view per image): the embedding that
        ``lablens suggest`` spreads a batch over."""
        captured: list[torch.Tensor] = []
        hook = self.head_of(self.network_).register_forward_hook(
            lambda _m, inputs, _out: captured.append(inputs[0].detach().float().cpu())
        )
        try:
            self.outputs(X, device=device, batch_size=batch_size, tta=False)
        finally:
            hook.remove()
        if not captured:
            return np.zeros((0, 0), np.float32)
        return torch.cat(captured).flatten(1).numpy()

    def predict_proba(
        self, X: np.ndarray, *, device: str | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        logits = torch.from_numpy(self.predict_logits(X, device=device, batch_size=batch_size))
        return torch.softmax(logits, dim=1).numpy()

    # -- bundles ------------------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "arch": self.arch_,
            "classes": [str(c) for c in self.classes_],
            "mean": list(self.mean_),
            "std": list(self.std_),
            "weights_source": self.weights_source_,
            "best_epoch": self.best_epoch_,
            **({"init": self.init_} if getattr(self, "init_", None) else {}),
        }

    def export_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.network_.state_dict().items()}
        return tensors, self._meta()

    def import_state(self, tensors: dict[str, Any], meta: dict[str, Any]) -> NetworkClassifier:
        p = self.typed_params()
        self.classes_ = np.asarray(meta["classes"])
        self.arch_ = meta["arch"]
        self.mean_, self.std_ = tuple(meta["mean"]), tuple(meta["std"])
        self.weights_source_ = meta.get("weights_source", "bundle")
        self.best_epoch_ = meta.get("best_epoch", 0)
        self.init_ = meta.get("init")
        self.history_ = []
        # ``arch`` can differ from model_name: offline ImageNet weights pick their own variant
        net, _ = self._build(p, len(self.classes_), "scratch", arch=self.arch_)
        missing, unexpected = net.load_state_dict(
            {k: torch.as_tensor(v) for k, v in tensors.items()}, strict=False
        )
        if missing or unexpected:
            raise SettingError(
                f"bundle weights do not fit {type(self).__name__} {self.arch_}: {len(missing)} missing, "
                f"{len(unexpected)} unexpected tensors"
            )
        self.network_ = net.eval()
        return self


@register("deep")
class DeepClassifier(NetworkClassifier):
    """A timm network fine-tuned or trained from scratch on ``N×S×S×3`` uint8 images (see :class:`DeepParams`)."""

    Params = DeepParams
    capabilities = Capabilities(resumable=True, distributed=True, onnx=True)
    summary = "a timm network trained end to end"
    __init__ = params_init(DeepParams)

    def _build(
        self, p: Any, n_classes: int, weights: str, arch: str | None = None
    ) -> tuple[torch.nn.Module, Any]:
        return build_network(arch or p.model_name, weights, n_classes, p.drop_rate)

    def _task(self, p: Any, net: torch.nn.Module, y_idx: np.ndarray) -> ClassificationTask:
        return ClassificationTask(
            net,
            len(self.classes_),
            self._loss(p, y_idx),
            self.mean_,
            self.std_,
            tta=p.tta,
            tta_margin=p.tta_margin,
            channels_last=p.channels_last,
        )


for _name in STUDY_MODELS:
    register(_name, fixed={"model_name": _name})(DeepClassifier)


def _timm_fallback(name: str) -> EstimatorSpec | None:
    try:
        check_model_name(name)
    except UnknownNameError:
        return None
    return EstimatorSpec(name, DeepClassifier, {"model_name": name})


register_fallback(_timm_fallback)
