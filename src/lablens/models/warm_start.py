"""Warm start: a new network begins from a bundle's trained network instead of ImageNet or random weights.

A lab adapting a model to its own microscope and stain keeps what the bundle learnt. The bundle's backbone
(encoder) is copied whole; its class head is mapped **by class name**: a class present in both keeps its row
(weights and bias, bit for bit), a new class keeps the fresh row the network was built with, a class of the
bundle that the new data lacks is dropped. Other parts of the new network (an attention pooling, a de-blurring
decoder) are copied when the bundle has them with the same names and shapes, and otherwise stay fresh; the
record says which. The input normalisation is the bundle's. A bundle of another architecture or input size is
refused, naming both, since its weights would not mean the same thing.

Families declare where their backbone and class head are (``NetworkClassifier.backbone_of`` / ``head_of``), so the
same mapping serves a plain network, a multi-task network (``backbone``) and a multiple-instance one (``encoder``;
encoder only when the bundle's head was trained on cells and the new one pools a bag — the rows still map by class).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lablens.bundle_files import BundleError, read_bundle_files
from lablens.errors import SettingError
from lablens.models.from_card import estimator_from_card


@dataclass(frozen=True)
class InitBundle:
    """A bundle read to start from: its path, hash and fitted estimator (a network family)."""

    path: Path
    hash: str
    estimator: Any
    image_size: int

    @property
    def arch(self) -> str:
        return str(self.estimator.arch_)

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.estimator.classes_]


def read_init_bundle(path: str | Path) -> InitBundle:
    """The bundle at ``path``, verified; a :class:`SettingError` naming it when it holds no network to start from."""
    path = Path(path).expanduser()
    try:
        card, tensors, digest = read_bundle_files(path)
    except BundleError as exc:
        raise BundleError(f"model.init: {exc}") from None
    est = estimator_from_card(path, card, tensors)
    if getattr(est, "network_", None) is None or not hasattr(est, "backbone_of"):
        name = (card.get("estimator") or {}).get("name")
        raise SettingError(
            f"model.init {path}: model {name!r} has no network to start from (a deep family's bundle has)"
        )
    return InitBundle(path, digest, est, int(card["preprocessing"]["image_size"]))


def _module_name(root: torch.nn.Module, module: torch.nn.Module) -> str:
    """The dotted name of ``module`` inside ``root`` ('' for the root itself)."""
    for name, m in root.named_modules():
        if m is module:
            return name
    raise ValueError("module is not part of the network")  # a family declared a part it does not hold


def _prefixed(name: str) -> str:
    return f"{name}." if name else ""


def warm_start(
    net: torch.nn.Module, family: Any, classes: list[str], source: InitBundle, image_size: int
) -> dict[str, Any]:
    """Load ``source``'s weights into ``net`` (built by ``family`` for ``classes`` as the bundle's architecture)
    in place; return the record ``{bundle, bundle_hash, arch, kept, new, dropped, fresh}`` a card keeps."""
    if source.image_size != image_size:
        raise SettingError(
            f"model.init {source.path}: the bundle reads {source.image_size} px images, this model "
            f"{image_size} px; a warm start needs the same input size"
        )
    src_est = source.estimator
    src_net = src_est.network_
    src_state, state = src_net.state_dict(), net.state_dict()
    src_bb = _prefixed(_module_name(src_net, src_est.backbone_of(src_net)))
    bb = _prefixed(_module_name(net, family.backbone_of(net)))
    src_head = _prefixed(_module_name(src_net, src_est.head_of(src_net)))
    head = _prefixed(_module_name(net, family.head_of(net)))
    src_rows = {c: i for i, c in enumerate(source.classes)}
    kept = [c for c in classes if c in src_rows]
    loaded, fresh = {}, []
    for key, value in state.items():
        if key.startswith(head):
            src_key = src_head + key[len(head) :]
            loaded[key] = _head_rows(value, src_state.get(src_key), classes, src_rows)
            if loaded[key] is value:
                fresh.append(key)
            continue
        src_key = src_bb + key[len(bb) :] if key.startswith(bb) else key
        if key.startswith(bb) and (src_key not in src_state or src_state[src_key].shape != value.shape):
            raise SettingError(
                f"model.init {source.path}: backbone tensor {key!r} does not fit the bundle's {source.arch}"
            )
        if src_key in src_state and src_state[src_key].shape == value.shape:
            loaded[key] = src_state[src_key]
        else:
            loaded[key] = value
            fresh.append(key)
    net.load_state_dict(loaded)
    parts = sorted({k.rsplit(".", 1)[0] for k in fresh})
    return {
        "bundle": str(source.path),
        "bundle_hash": source.hash,
        "arch": source.arch,
        "kept": kept,
        "new": [c for c in classes if c not in src_rows],
        "dropped": [c for c in source.classes if c not in set(classes)],
        "fresh": parts,
    }


def _head_rows(
    fresh: torch.Tensor, src: torch.Tensor | None, classes: list[str], src_rows: dict[str, int]
) -> torch.Tensor:
    """The head tensor with each class's row taken from the bundle where the class is known there; ``fresh``
    itself when the bundle's head has another shape per row (its rows cannot mean the same)."""
    if src is None or src.shape[1:] != fresh.shape[1:] or fresh.shape[0] != len(classes):
        return fresh
    out = fresh.clone()
    for i, c in enumerate(classes):
        if c in src_rows:
            out[i] = src[src_rows[c]]
    return out
