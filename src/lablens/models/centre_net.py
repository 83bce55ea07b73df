"""A centre-point object detector network (CenterNet, Zhou et al. 2019) on any timm backbone.

The backbone's stride-4, -8 and -16 features are projected to one width, upsampled and summed (a light feature
pyramid), and one head predicts, per stride-4 cell: the logit that an object's centre lies there, the log of the
object's width and height (in output cells) and the centre's sub-cell offset. Objects are read back as the local
maxima of the centre map (:func:`lablens.fields.centres.decode`), with no anchors and no box NMS to tune.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from lablens.errors import SettingError
from lablens.nn.weights import NetInfo, build_network

#: output channels: centre logit, log width, log height, offset x, offset y
CHANNELS = 5
STRIDE = 4
#: the centre logit's initial bias: a prior of 0.1 (the focal loss's usual start, Lin et al. 2017)
PRIOR_BIAS = -2.19


class CentreNet(nn.Module):
    """Backbone features (strides 4/8/16) → summed pyramid → ``B×5×H/4×W/4`` maps (see module docstring)."""

    def __init__(self, backbone: nn.Module, width: int = 64) -> None:
        super().__init__()
        self.backbone = backbone
        channels = backbone.feature_info.channels()
        self.lateral = nn.ModuleList([nn.Conv2d(c, width, 1) for c in channels])
        self.head = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, CHANNELS, 1),
        )
        with torch.no_grad():
            self.head[-1].bias.zero_()
            self.head[-1].bias[0] = PRIOR_BIAS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        out = self.lateral[0](features[0])
        for lateral, f in zip(self.lateral[1:], features[1:], strict=True):
            out = out + F.interpolate(lateral(f), size=out.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(out)


def build_centre_net(model_name: str, weights: str, width: int = 64) -> tuple[CentreNet, NetInfo]:
    """A :class:`CentreNet` on timm ``model_name`` with ``weights`` (``scratch`` | ``imagenet`` | a file).

    The backbone is built (and its weights loaded) as a classifier by
    :func:`~lablens.nn.weights.build_network`, then its stem and stages are moved into timm's
    ``features_only`` form of the same architecture; every feature weight must be found there.
    """
    full, info = build_network(model_name, weights, num_classes=0)
    backbone = timm.create_model(info.arch, features_only=True, out_indices=(1, 2, 3), pretrained=False)
    if backbone.feature_info.reduction() != [STRIDE, 2 * STRIDE, 4 * STRIDE]:
        raise SettingError(
            f"model {model_name!r}: its feature strides {backbone.feature_info.reduction()} are not 4/8/16; "
            "choose a convolutional timm backbone (efficientnet, resnet, mobilenet …)"
        )
    missing = backbone.load_state_dict(full.state_dict(), strict=False).missing_keys
    if missing:
        raise SettingError(
            f"model {model_name!r}: {len(missing)} feature weights not found, e.g. {missing[0]}"
        )
    return CentreNet(backbone, width), info
