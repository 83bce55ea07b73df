"""Multi-task classifier (DeepMT-ND's design): diagnose, grade blur and de-blur with one shared encoder.

Registered as ``multitask``. It trains from clean labelled images alone: blur is synthesised on the fly by the
degradation protocol (:mod:`lablens.quality.degrade`), so the blur level and the clean image are known targets.
``quality_weight=0`` / ``deblur_weight=0`` switch the auxiliary heads off (ablation); with both off it is a
single-task classifier trained with blur augmentation. It trains on the same engine as every deep family
(:class:`~lablens.train.tasks.blur.BlurMultiTask`), so it resumes, averages weights (EMA), predicts with
8-view TTA and trains across processes like them.

Beyond the estimator contract it offers ``predict_quality`` (expected blur level per image, used by the
predictor's quality gate), ``deblur`` (restored uint8 images) and ``outputs`` (all heads at once, optionally
under given degradation records, for blur studies).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pydantic import field_validator

from lablens.config import AugmentConfig
from lablens.errors import SettingError
from lablens.models.deep import DeepParams, NetworkClassifier
from lablens.models.multitask_net import MultiTaskNet
from lablens.models.registry import Capabilities, register
from lablens.nn.weights import build_network
from lablens.params import params_init
from lablens.quality.degrade import Degradation, parse_kinds, parse_levels
from lablens.train.tasks import BlurMultiTask, BlurSettings
from lablens.train.tasks.blur import degrader


class MultiTaskParams(DeepParams):
    """:class:`~lablens.models.deep.DeepParams` (a timm CNN with ``forward_intermediates``) plus the blur tasks.

    ``levels``: blur levels trained on (``"0-4"``; ``"0"``: clean images only); ``val_levels``: levels the
    validation images are degraded at for epoch selection (None: ``levels``); ``kinds``: blur kinds drawn per
    image; ``noise``: largest sensor-noise sd of blurred images; ``blur_prob``: share of training images that
    are blurred; ``quality_weight``, ``deblur_weight``: loss weights of the auxiliary tasks (0 switches a head
    off). Augmentation adds no blur by default: the degradation protocol does.
    """

    model_name: str = "efficientnet_lite0"
    weights: str = "imagenet"
    image_size: int = 96
    augment: AugmentConfig | None = AugmentConfig(blur_prob=0.0)
    levels: str = "0-4"
    val_levels: str | None = None
    kinds: str = "defocus,gaussian,motion"
    noise: float = 0.01
    blur_prob: float = 0.8
    quality_weight: float = 0.5
    deblur_weight: float = 1.0

    @field_validator("levels", "val_levels")
    @classmethod
    def _levels(cls, v: str | None) -> str | None:
        if v is not None:
            parse_levels(v)
        return v

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: str) -> str:
        parse_kinds(v)
        return v

    def blur(self) -> BlurSettings:
        return BlurSettings(
            levels=parse_levels(self.levels),
            val_levels=parse_levels(self.val_levels) if self.val_levels is not None else None,
            kinds=parse_kinds(self.kinds),
            noise=self.noise,
            blur_prob=self.blur_prob,
            quality_weight=self.quality_weight,
            deblur_weight=self.deblur_weight,
            seed=self.seed,
        )


@register("multitask")
class MultiTaskClassifier(NetworkClassifier):
    """A timm encoder with classification, blur-level and de-blurring heads, trained under synthetic blur."""

    Params = MultiTaskParams
    capabilities = Capabilities(resumable=True, distributed=True)
    summary = "a timm encoder with classification, blur-level and de-blurring heads"
    __init__ = params_init(MultiTaskParams)

    def _build(
        self, p: Any, n_classes: int, weights: str, arch: str | None = None
    ) -> tuple[torch.nn.Module, Any]:
        backbone, info = build_network(arch or p.model_name, weights, n_classes, p.drop_rate)
        net = MultiTaskNet(backbone, p.image_size, quality=p.quality_weight > 0, deblur=p.deblur_weight > 0)
        return net, info

    def backbone_of(self, net: torch.nn.Module) -> torch.nn.Module:
        return net.backbone

    def head_of(self, net: torch.nn.Module) -> torch.nn.Module:
        return net.backbone.get_classifier()

    def _task(self, p: Any, net: torch.nn.Module, y_idx: np.ndarray) -> BlurMultiTask:
        return BlurMultiTask(
            net,
            len(self.classes_),
            self._loss(p, y_idx),
            self.mean_,
            self.std_,
            blur=p.blur(),
            tta=p.tta,
            channels_last=p.channels_last,
        )

    def blur_settings(self) -> BlurSettings:
        """The degradation protocol this model trains (and validates) under."""
        return self.typed_params().blur()

    # -- inference ----------------------------------------------------------------------------------------
    def outputs(
        self,
        X: np.ndarray,
        records: Sequence[Degradation] | None = None,
        want_deblurred: bool = False,
        *,
        device: str | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> dict[str, np.ndarray]:
        """All heads for ``X`` (degraded first by ``records`` when given): logits, level, deblurred."""
        if records is not None:
            kwargs["prepare"] = degrader(records)
        if want_deblurred:
            kwargs["collect"] = _restore
        return super().outputs(X, device=device, batch_size=batch_size, **kwargs)

    def predict_quality(self, X: np.ndarray, *, device: str | None = None) -> np.ndarray:
        """Predicted blur level per image (the quality head); raises when the head was switched off."""
        out = self.outputs(X, device=device)
        if "level" not in out:
            raise SettingError("this multitask model was trained without its quality head (quality_weight=0)")
        return out["level"]

    def deblur(self, X: np.ndarray, *, device: str | None = None) -> np.ndarray:
        """Restored ``N×S×S×3`` uint8 images (the input itself when the de-blurring head is off)."""
        return self.outputs(X, want_deblurred=True, device=device)["deblurred"]

    # -- bundles ------------------------------------------------------------------------------------------
    def export_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        tensors, meta = super().export_state()
        p = self.typed_params()
        meta["heads"] = (
            ["classification"]
            + (["quality"] if p.quality_weight > 0 else [])
            + (["deblur"] if p.deblur_weight > 0 else [])
        )
        return tensors, meta


def _restore(x: torch.Tensor, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the restored uint8 image (NHWC): the (degraded) input plus the predicted residual."""
    restored = x + out["residual"] if "residual" in out else x
    deblurred = (restored.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1)
    return {**out, "deblurred": deblurred}
