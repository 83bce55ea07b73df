"""The multi-task network of DeepMT-ND's design: one timm encoder, three heads.

- classification: the backbone's own pooled head (``forward_head``);
- quality: a small MLP on the pooled last feature map regressing the blur level;
- de-blurring: a U-Net-style decoder fed by the encoder's five feature maps (strides 2 … 32, timm's
  ``forward_intermediates``), predicting a residual added to the blurred input.

Any timm CNN that implements ``forward_intermediates`` works (EfficientNet, ResNet, DenseNet, …).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNetDecoder(nn.Module):
    """Upsample from the deepest map, joining each shallower skip, back to the input resolution."""

    def __init__(self, skip_channels: list[int], widths: tuple[int, ...] = (96, 64, 48, 32, 24)) -> None:
        super().__init__()
        deep = skip_channels[::-1]  # deepest first
        widths = widths[: len(deep)]
        self.blocks = nn.ModuleList()
        cin = deep[0]
        for i, width in enumerate(widths):
            skip = deep[i + 1] if i + 1 < len(deep) else 3  # the last join is with the input image itself
            self.blocks.append(_block(cin + skip, width))
            cin = width
        self.out = nn.Conv2d(cin, 3, 1)
        nn.init.zeros_(self.out.weight)  # start as the identity: output = blurred input
        nn.init.zeros_(self.out.bias)

    def forward(self, feats: list[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        deep = feats[::-1]
        x = deep[0]
        skips = [*deep[1:], image]
        for block, skip in zip(self.blocks, skips, strict=False):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        if x.shape[-2:] != image.shape[-2:]:
            x = F.interpolate(x, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(x)


class MultiTaskNet(nn.Module):
    """``forward(x)`` → ``{"logits", "level", "residual"}``; heads switched off return nothing for them."""

    def __init__(
        self, backbone: nn.Module, image_size: int, quality: bool = True, deblur: bool = True
    ) -> None:
        super().__init__()
        self.backbone = backbone
        with torch.no_grad():
            was = backbone.training
            backbone.eval()
            final, feats = backbone.forward_intermediates(torch.zeros(1, 3, image_size, image_size))
            backbone.train(was)
        self.quality_head = (
            nn.Sequential(nn.Linear(final.shape[1], 64), nn.ReLU(inplace=True), nn.Linear(64, 1))
            if quality
            else None
        )
        self.decoder = UNetDecoder([f.shape[1] for f in feats]) if deblur else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        final, feats = self.backbone.forward_intermediates(x)
        out = {"logits": self.backbone.forward_head(final)}
        if self.quality_head is not None:
            out["level"] = self.quality_head(final.mean(dim=(2, 3))).squeeze(1)
        if self.decoder is not None:
            out["residual"] = self.decoder(feats, x)
        return out
