"""Class imbalance: class-weighted loss or focal loss (the balanced sampler is an epoch order, see
:func:`lablens.train.order.epoch_order`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from lablens.errors import SettingError

IMBALANCE_MODES = ("none", "weighted", "sampler", "focal")


def balanced_class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """``n / (K * count_k)`` per class (scikit-learn's 'balanced'); absent classes get weight 0."""
    weights = np.zeros(n_classes)
    present = np.unique(y)
    weights[present] = compute_class_weight("balanced", classes=present, y=y)
    return weights


class ClassificationLoss(torch.nn.Module):
    """Cross-entropy (optionally class-weighted, label-smoothed) or multi-class focal loss."""

    def __init__(
        self,
        mode: str,
        class_weights: np.ndarray | None = None,
        focal_gamma: float = 2.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if mode not in IMBALANCE_MODES:
            raise SettingError(f"unknown imbalance mode {mode!r}; choose one of {', '.join(IMBALANCE_MODES)}")
        self.mode = mode
        self.focal_gamma = focal_gamma
        self.label_smoothing = label_smoothing
        w = torch.as_tensor(class_weights, dtype=torch.float32) if mode == "weighted" else None
        self.register_buffer("weight", w, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.mode == "focal":
            logp = F.log_softmax(logits, dim=1)
            ce = F.nll_loss(logp, target, reduction="none")
            pt = logp.gather(1, target[:, None]).squeeze(1).exp()
            return ((1.0 - pt) ** self.focal_gamma * ce).mean()
        return F.cross_entropy(logits, target, weight=self.weight, label_smoothing=self.label_smoothing)
