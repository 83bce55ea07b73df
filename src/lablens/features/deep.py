"""Deep features: a timm backbone used as a fixed feature extractor (Acevedo 2019's "CNN features + SVM").

The backbone is never trained here; its globally average-pooled activations, from the last stage or from
several stages (``stages=2+3+4``), become the features a classical classifier learns from. Weights come from
``lablens.nn.weights``: ``imagenet`` (offline for EfficientNet-Lite0/1/2, the hub otherwise), a local
weights file, or ``scratch`` (random features: a baseline, not a recommendation).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lablens.device import resolve_device
from lablens.features.base import FeatureExtractor
from lablens.features.registry import register_extractor
from lablens.nn.weights import build_network


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@register_extractor("deep")
class DeepFeatures(FeatureExtractor):
    """Pooled activations of a pretrained (or local-weights) timm backbone.

    Args:
        model_name: any timm model name (positional in a spec: ``deep[efficientnet_lite0]``).
        weights: ``imagenet``, ``scratch`` or a weights-file path.
        stages: feature-stage indices to pool and concatenate (timm ``forward_intermediates`` numbering,
            negative from the end); None → the pre-logits features of the whole network.
        image_size: resize crops to this side first (None → as given).
        seed: initialisation of ``scratch`` weights, so that random features too are a pure function of the
            options (and can be cached).
        batch_size, device, threads: inference settings (do not change the features).
    """

    positional = "model_name"

    def __init__(
        self,
        model_name: str = "efficientnet_lite0",
        weights: str = "imagenet",
        stages: list[int] | int | None = None,
        image_size: int | None = None,
        batch_size: int = 64,
        device: str = "auto",
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        self.model_name = model_name
        self.weights = weights
        self.stages = stages
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = device
        self.threads = threads
        self.seed = seed

    def _stages(self) -> list[int] | None:
        if self.stages is None:
            return None
        return [int(s) for s in (self.stages if isinstance(self.stages, list | tuple) else [self.stages])]

    def key(self) -> str:
        weights = str(self.weights)
        path = Path(weights).expanduser()
        if path.is_file():  # the file's content, not its name, decides the features
            weights = f"file:{_file_digest(path)}"
        seed = f",seed={self.seed}" if weights.lower() in ("scratch", "none", "random") else ""
        return (
            f"deep[{self.model_name},weights={weights},stages={self._stages()},size={self.image_size}{seed}]"
        )

    def _network(self) -> tuple[torch.nn.Module, tuple, tuple]:
        if getattr(self, "_net", None) is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.seed))
                net, info = build_network(self.model_name, str(self.weights), num_classes=0)
            self._net = (net.eval(), info.mean, info.std)
        return self._net

    def _forward(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        stages = self._stages()
        if stages is None:
            return net.forward_head(net.forward_features(x), pre_logits=True).flatten(1)
        maps = net.forward_intermediates(x, indices=stages, intermediates_only=True)
        return torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1)

    def feature_names(self) -> list[str]:
        net, _, _ = self._network()
        side = int(self.image_size or 64)
        with torch.no_grad():
            dim = self._forward(net, torch.zeros(1, 3, side, side)).shape[1]
        return [f"deep_{i}" for i in range(dim)]

    def transform(self, images: np.ndarray) -> np.ndarray:
        if self.threads:
            torch.set_num_threads(int(self.threads))
        net, mean, std = self._network()
        device = resolve_device(self.device)
        net = net.to(device)
        m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        s = torch.tensor(std, device=device).view(1, 3, 1, 1)
        out = []
        with torch.no_grad():
            for start in range(0, len(images), int(self.batch_size)):
                xb = torch.from_numpy(np.array(images[start : start + int(self.batch_size)])).to(device)
                x = xb.permute(0, 3, 1, 2).float().div_(255.0)
                if self.image_size and x.shape[-1] != int(self.image_size):
                    size = int(self.image_size)
                    x = F.interpolate(
                        x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
                    )
                out.append(self._forward(net, (x - m) / s).float().cpu())
        net.to("cpu")
        dim = out[0].shape[1] if out else 0
        return torch.cat(out).numpy() if out else np.zeros((0, dim), np.float32)
