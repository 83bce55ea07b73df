"""A multiple-instance network: a cell encoder shared by every cell of a bag, then a pooling into one call.

A bag is a sample's cells, ``B×K×3×S×S``. Every cell is encoded by the same timm backbone (features only), and
the cells are pooled into one sample representation:

- ``attention``: gated attention (Ilse, Tomczak & Welling, "Attention-based deep multiple instance learning",
  ICML 2018): a softmax over the bag of ``w·(tanh(V h) ⊙ sigmoid(U h))`` weighs each cell;
- ``mean``: every cell weighs the same (the baseline).

Outputs by name: ``logits`` (the sample's classes), ``attention`` (the cell weights, summing to 1 per bag) and
``cell_logits`` (the same classifier applied to each cell alone: which pattern each cell looks like).
"""

from __future__ import annotations

import torch
from torch import nn

from lablens.errors import SettingError

POOLINGS = ("attention", "mean")


class GatedAttention(nn.Module):
    """Cell weights from cell features: ``softmax_k(w · (tanh(V h_k) ⊙ sigmoid(U h_k)))``."""

    def __init__(self, n_features: int, hidden: int) -> None:
        super().__init__()
        self.v = nn.Linear(n_features, hidden)
        self.u = nn.Linear(n_features, hidden)
        self.w = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = self.w(torch.tanh(self.v(h)) * torch.sigmoid(self.u(h))).squeeze(-1)
        return torch.softmax(scores.float(), dim=-1).to(h.dtype)


class MILNet(nn.Module):
    """``encoder`` (cells → ``n_features``) + pooling (``attention`` | ``mean``) + a linear classifier."""

    def __init__(
        self,
        encoder: nn.Module,
        n_features: int,
        n_classes: int,
        pooling: str = "attention",
        hidden: int = 128,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise SettingError(f"pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
        self.encoder = encoder
        self.pooling = pooling
        self.attention = GatedAttention(n_features, hidden) if pooling == "attention" else None
        self.classifier = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b, k = x.shape[:2]
        h = self.encoder(x.flatten(0, 1)).reshape(b, k, -1)
        if self.attention is not None:
            a = self.attention(h)
        else:
            a = torch.full((b, k), 1.0 / k, device=h.device, dtype=h.dtype)
        pooled = (a.unsqueeze(-1) * h).sum(1)
        return {"logits": self.classifier(pooled), "attention": a, "cell_logits": self.classifier(h)}
