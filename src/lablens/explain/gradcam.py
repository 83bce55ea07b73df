"""Grad-CAM for the CNNs of deep bundles, with the target layer found automatically.

Grad-CAM (Selvaraju et al., 2017) weights the feature maps of a late convolutional layer by the mean gradient of
the class score over each map, keeps the positive part of the sum and scales it to [0, 1]: where in the cell
the network found evidence for the class. The target layer is found by running the network once with forward
hooks on every module and taking the *last* module whose output is still a spatial map (``N×C×H×W`` with
``H, W > 1``): for timm CNNs that is the final convolution/activation before global pooling, whatever the family.

Written here rather than taken from ``pytorch-grad-cam``: that package pins the full ``opencv-python`` wheel,
which clashes with the ``opencv-python-headless`` lablens uses on servers, and the method itself is two hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from lablens.errors import SettingError
from lablens.infer.bundle import Bundle
from lablens.models.deep import DeepClassifier


def find_target_layer(net: torch.nn.Module, image_size: int) -> tuple[str, torch.nn.Module]:
    """Name and module of the last layer whose output is a spatial feature map."""
    seen: list[tuple[str, torch.nn.Module]] = []
    hooks = []
    for name, module in net.named_modules():
        if name and not list(module.children()):

            def hook(mod, _inp, out, name=name):
                if isinstance(out, torch.Tensor) and out.ndim == 4 and min(out.shape[-2:]) > 1:
                    seen.append((name, mod))

            hooks.append(module.register_forward_hook(hook))
    try:
        was_training = net.training
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, 3, image_size, image_size))
        net.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    if not seen:
        raise SettingError("no layer of this network outputs a spatial feature map; Grad-CAM needs a CNN")
    return seen[-1]


@dataclass
class CamResult:
    heatmaps: np.ndarray  # N×S×S float32 in [0, 1]
    classes: np.ndarray  # N class indices explained
    layer: str


class GradCam:
    """Grad-CAM on a CNN, with the bundle's preprocessing (scale to [0, 1], normalise; no TTA).

    Build it with :meth:`for_bundle` for a deep bundle, or directly from a network.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        image_size: int,
        layer: str | None = None,
    ) -> None:
        self.net = net.to("cpu").eval()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        if layer is None:
            self.layer_name, self.layer = find_target_layer(self.net, image_size)
        else:
            modules = dict(self.net.named_modules())
            if layer not in modules:
                raise SettingError(f"no layer named {layer!r} in this network")
            self.layer_name, self.layer = layer, modules[layer]

    @classmethod
    def for_bundle(cls, bundle: Bundle, layer: str | None = None) -> GradCam:
        est = bundle.estimator
        if not isinstance(est, DeepClassifier):
            raise SettingError(
                f"{bundle.path}: Grad-CAM needs a deep (CNN) bundle; this one is {type(est).__name__}"
            )
        return cls(est.network_, est.mean_, est.std_, bundle.image_size, layer)

    def __call__(self, images: np.ndarray, classes: np.ndarray | None = None) -> CamResult:
        """Heat maps for ``N×S×S×3`` uint8 images, for ``classes`` (default: each image's predicted class)."""
        x = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 255.0
        x = (x - self.mean) / self.std
        store: dict[str, torch.Tensor] = {}

        def keep(_mod, _inp, out):
            out.retain_grad()
            store["maps"] = out

        handle = self.layer.register_forward_hook(keep)
        try:
            with torch.enable_grad():
                logits = self.net(x)
                idx = logits.argmax(1) if classes is None else torch.as_tensor(classes, dtype=torch.long)
                self.net.zero_grad(set_to_none=True)
                logits.gather(1, idx.view(-1, 1)).sum().backward()
        finally:
            handle.remove()
        maps, grads = store["maps"].detach(), store["maps"].grad.detach()
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * maps).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=images.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
        flat = cam.flatten(1)
        lo, hi = flat.min(1).values.view(-1, 1, 1), flat.max(1).values.view(-1, 1, 1)
        cam = (cam - lo) / torch.clamp(hi - lo, min=1e-8)
        return CamResult(cam.numpy().astype(np.float32), idx.numpy(), self.layer_name)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image with the heat map blended in (OpenCV's JET colour map), uint8 RGB."""
    colour = cv2.applyColorMap(np.uint8(np.clip(heatmap, 0, 1) * 255), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB).astype(np.float32)
    return np.uint8(np.clip((1 - alpha) * image.astype(np.float32) + alpha * colour, 0, 255))


def explainer_for(estimator: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """``(images, class indices) -> Grad-CAM overlays`` for a deep estimator; ``None`` for any other."""
    if not isinstance(estimator, DeepClassifier) or getattr(estimator, "network_", None) is None:
        return None
    try:
        cam = GradCam(estimator.network_, estimator.mean_, estimator.std_, estimator.image_size)
    except ValueError:  # no spatial layer (not a CNN): the report simply has no heat maps
        return None

    def explain(images: np.ndarray, classes: np.ndarray) -> np.ndarray:
        res = cam(images, classes)
        return np.stack([overlay(im, h) for im, h in zip(images, res.heatmaps, strict=True)])

    return explain
