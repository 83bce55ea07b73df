"""Multiple-instance classifiers: a sample's pattern learned from its cells with only the sample's label.

A lab's archive holds, for each serum or slide, its fields and the pattern the lab reported, not a label per
cell. The ``mil`` family learns from exactly that: ``X`` is a sequence of bags (one per sample, each an
``n_i×S×S×3`` uint8 array of the sample's cell crops, any ``n_i ≥ 1``) and ``y`` one label per sample. A cell
encoder (any timm backbone) and a pooling over the sample's cells (gated attention, or the mean as the
baseline) are trained end to end on the one training engine; the attention says which cells drove the call.

Training items are bags of ``cells_per_bag`` cells drawn from each training sample (``bags_per_sample`` of them,
drawn once from the seed: :func:`training_bags`); prediction sees every cell of a sample at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from lablens.config import NetworkSettings, TrainingSettings
from lablens.device import resolve_device
from lablens.models.deep import NetworkClassifier
from lablens.models.mil_net import MILNet
from lablens.models.registry import Capabilities, register
from lablens.nn.weights import build_network
from lablens.params import FamilyParams, params_init
from lablens.train.tasks.mil import MILTask, bag_outputs


class MILParams(FamilyParams, NetworkSettings, TrainingSettings):
    """The cell encoder (``model_name``: any timm backbone; ``weights``, ``image_size`` of a cell crop), the
    ``pooling`` (``attention`` or ``mean``), how training bags are drawn, and every training-engine setting.
    ``batch_size`` counts bags. ``channels_last`` does not apply to bags and stays off."""

    model_name: str = "efficientnet_lite0"
    pooling: Literal["attention", "mean"] = "attention"
    attention_hidden: int = Field(128, ge=8)
    cells_per_bag: int = Field(16, ge=1)
    bags_per_sample: int = Field(8, ge=1)
    image_size: int = Field(64, ge=16, le=512)
    batch_size: int = Field(8, ge=1)
    tta: bool = False
    channels_last: bool = False
    resize_mode: Literal["pad", "squash", "crop"] = "pad"


def training_bags(
    bags: Sequence[np.ndarray], y: np.ndarray, cells_per_bag: int, bags_per_sample: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``bags_per_sample`` items of ``cells_per_bag`` cells per sample: ``(items N×K×S×S×3, labels, sample index)``.

    Cells are drawn without replacement while a sample has enough, with replacement otherwise; a pure function
    of ``seed``, so a run replays exactly (also after a resume).
    """
    rng = np.random.default_rng([seed, 0x4D494C])
    items, labels, owner = [], [], []
    for i, (bag, label) in enumerate(zip(bags, y, strict=True)):
        n = len(bag)
        for _ in range(bags_per_sample):
            pick = rng.choice(n, cells_per_bag, replace=n < cells_per_bag)
            items.append(bag[np.sort(pick)])
            labels.append(label)
            owner.append(i)
    return np.stack(items), np.asarray(labels), np.asarray(owner)


def check_bags(X: Any, what: str = "X") -> list[np.ndarray]:
    """``X`` as a list of non-empty ``n×S×S×3`` uint8 bags of one crop size; a ValueError naming the bag otherwise."""
    if isinstance(X, np.ndarray) and X.dtype != object and X.ndim == 5:
        X = list(X)
    bags = list(X)
    for i, bag in enumerate(bags):
        b = np.asarray(bag)
        if b.ndim != 4 or b.shape[-1] != 3 or b.dtype != np.uint8 or len(b) == 0:
            raise ValueError(
                f"{what}[{i}]: a bag must be a non-empty n×S×S×3 uint8 array of cell crops, got {b.dtype} {b.shape}"
            )
        if b.shape[1:] != np.asarray(bags[0]).shape[1:]:
            raise ValueError(
                f"{what}[{i}]: cell crops of {b.shape[1:3]} px; bag 0 has {np.asarray(bags[0]).shape[1:3]}"
            )
    return [np.asarray(b) for b in bags]


@register("mil", fixed={"pooling": "attention"})
@register("mil-mean", fixed={"pooling": "mean"})
class MILClassifier(NetworkClassifier):
    """Sample classifier from bags of cell crops (see the module docstring and :class:`MILParams`); bundle state as
    every single-network family (:class:`~lablens.models.deep.NetworkClassifier`)."""

    Params = MILParams
    capabilities = Capabilities(resumable=True, distributed=True, inputs="bags")
    summary = "multiple-instance learning over a sample's cells (attention or mean pooling)"
    __init__ = params_init(MILParams)

    def _build(self, p: Any, n_classes: int, weights: str, arch: str | None = None) -> tuple[MILNet, Any]:
        encoder, info = build_network(arch or p.model_name, weights, 0, p.drop_rate)
        return MILNet(encoder, int(encoder.num_features), n_classes, p.pooling, p.attention_hidden), info

    _settings_fixed: ClassVar[dict[str, Any]] = {"channels_last": False}  # bags are 5-D

    def _inputs(self, X: Any, what: str = "X") -> list[np.ndarray]:
        return [self.resize_images(bag) for bag in check_bags(X, what)]

    def _training_items(self, p: Any, X: Any, y_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        items, y_items, _ = training_bags(X, y_idx, p.cells_per_bag, p.bags_per_sample, p.seed)
        return items, y_items

    def backbone_of(self, net: torch.nn.Module) -> torch.nn.Module:
        return net.encoder

    def head_of(self, net: torch.nn.Module) -> torch.nn.Module:
        return net.classifier

    def _task(self, p: Any, net: torch.nn.Module, y_idx: np.ndarray) -> MILTask:
        return MILTask(
            net, len(self.classes_), self._loss(p, y_idx), self.mean_, self.std_, amp=p.amp, tta=p.tta
        )

    # -- inference ----------------------------------------------------------------------------------------
    def bag_outputs(
        self, X: Sequence[np.ndarray], *, device: str | None = None
    ) -> list[dict[str, np.ndarray]]:
        """Per sample: ``logits`` (classes), ``attention`` (one weight per cell, summing to 1) and
        ``cell_logits`` (each cell scored alone by the sample classifier)."""
        dev = resolve_device(device or "auto")
        net = self.network_.to(dev)
        try:
            return bag_outputs(
                net,
                self._inputs(X),
                mean=self.mean_,
                std=self.std_,
                device=dev,
                amp=bool(self.amp),
                tta=bool(self.tta),
                tta_margin=self.tta_margin,
            )
        finally:
            self.network_ = net.to("cpu")

    def predict_logits(
        self, X: Sequence[np.ndarray], *, device: str | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        outs = self.bag_outputs(X, device=device)
        return (
            np.stack([o["logits"] for o in outs]) if outs else np.zeros((0, len(self.classes_)), np.float32)
        )

    def predict_proba(
        self, X: Sequence[np.ndarray], *, device: str | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        return torch.softmax(torch.from_numpy(self.predict_logits(X, device=device)), dim=1).numpy()
