"""Training checkpoints as single safetensors files (tensors + JSON metadata), written atomically.

Nothing here unpickles: nested state (model, optimizer, loop counters) is flattened into named
tensors plus a JSON document stored in the safetensors header metadata. Each checkpoint is written to
a temporary file and renamed into place, so a run killed at any instant leaves either the previous
checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lablens.errors import SettingError

_TENSOR_TAG = "__tensor__"


def flatten_state(obj: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested dict/list structure into ``{name: tensor}`` and a JSON-ready skeleton."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().cpu().contiguous()
            return {_TENSOR_TAG: path}
        if isinstance(node, dict):
            return {"__dict__": [[walk_key(k), walk(v, f"{path}.{k}")] for k, v in node.items()]}
        if isinstance(node, (list, tuple)):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(node)]
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"cannot checkpoint value of type {type(node).__name__} at {path}")

    def walk_key(k: Any) -> Any:
        if not isinstance(k, (str, int)):
            raise TypeError(f"checkpoint keys must be str or int, got {type(k).__name__}")
        return k

    skeleton = walk(obj, prefix or "state")
    return tensors, skeleton


def unflatten_state(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, dict):
        if _TENSOR_TAG in skeleton:
            return tensors[skeleton[_TENSOR_TAG]]
        return {k: unflatten_state(tensors, v) for k, v in skeleton["__dict__"]}
    if isinstance(skeleton, list):
        return [unflatten_state(tensors, v) for v in skeleton]
    return skeleton


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (nested dicts of tensors and plain values) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, skeleton = flatten_state(state)
    # safetensors refuses tensors that share memory; checkpoints are small enough to copy.
    tensors = {k: v.clone() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"lablens_state": json.dumps(skeleton)})
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    with safe_open(str(path), framework="pt", device=str(device)) as fh:
        meta = fh.metadata() or {}
        if "lablens_state" not in meta:
            raise SettingError(f"{path} is not a lablens checkpoint")
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    return unflatten_state(tensors, json.loads(meta["lablens_state"]))
