"""Keep the first stages of a timm backbone at their starting weights (partial fine-tuning)."""

from __future__ import annotations

import torch

from lablens.errors import SettingError


def stage_groups(net: torch.nn.Module) -> list[list[str]] | None:
    """Parameter names of ``net`` by timm's coarse groups (stem, each stage, then the head), or None when the
    network declares no groups (``group_matcher``)."""
    if not callable(getattr(net, "group_matcher", None)):
        return None
    from timm.models import group_parameters

    groups = group_parameters(net, net.group_matcher(coarse=True))
    return [list(groups[k]) for k in sorted(groups)]


def check_frozen_stages(stages: int, weights_source: str) -> int:
    """``stages``, refused above 0 for a network that starts from scratch."""
    if stages and weights_source == "scratch":
        raise SettingError(
            f"train.frozen_stages = {stages}: the network starts from scratch, and frozen random weights "
            "learn nothing; give model.weights or model.init, or train.frozen_stages = 0"
        )
    return stages


def freeze_stages(net: torch.nn.Module, stages: int) -> int:
    """Stop training the stem and the first ``stages`` stages of ``net``; returns how many tensors were frozen.

    BatchNorm layers there keep updating their running statistics to the new images (only weights are fixed).
    """
    if stages == 0:
        return 0
    groups = stage_groups(net)
    if groups is None:
        raise SettingError(
            f"train.frozen_stages = {stages}: {type(net).__name__} declares no stages (timm's group_matcher)"
        )
    if stages > len(groups) - 3:  # the stem and the head are not stages; the last stage trains
        raise SettingError(
            f"train.frozen_stages = {stages}: this backbone has {len(groups) - 2} stages; at most "
            f"{len(groups) - 3} can be frozen (the last stage always trains)"
        )
    names = {name for group in groups[: stages + 1] for name in group}
    params = dict(net.named_parameters())
    for name in names:
        params[name].requires_grad_(False)
    return len(names)
