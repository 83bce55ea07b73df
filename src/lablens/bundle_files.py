"""The bundle's file format: a folder (or zip) holding ``weights.safetensors`` and ``card.json``, read and verified.

Below every user of bundles (inference, warm starts, feature extractors): reading needs nothing but the format.
Loading never unpickles: weights are read with safetensors, a pickle-based file is recognised and refused, and a
bundle whose weights do not match the sha256 recorded in its card is refused. Writing, with the package versions,
is :func:`lablens.infer.bundle.write_bundle_files`.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors_bytes

from lablens.errors import LablensError

BUNDLE_SCHEMA = "lablens.bundle/1"
WEIGHTS = "weights.safetensors"
CARD = "card.json"


class BundleError(LablensError):
    """A path that is not a usable lablens bundle; the message says why."""


def _refuse_pickle(data: bytes, name: str) -> None:
    if data[:1] == b"\x80" and len(data) > 1 and 2 <= data[1] <= 5:
        raise BundleError(
            f"{name} is a Python pickle; lablens never unpickles model files (a pickle can run arbitrary "
            "code). Use a lablens bundle (weights.safetensors + card.json)."
        )


def _read_members(path: Path) -> tuple[bytes, bytes]:
    """Return (card bytes, weights bytes) from a folder or a zip, refusing pickles with a reason."""
    if path.is_dir():
        card_p, weights_p = path / CARD, path / WEIGHTS
        if not card_p.is_file():
            pickles = [
                p.name for p in path.iterdir() if p.suffix in (".pt", ".pth", ".pkl", ".pickle", ".bin")
            ]
            extra = f" (found {', '.join(pickles)}: pickle-based files are never loaded)" if pickles else ""
            raise BundleError(f"{path} is not a lablens bundle: it has no {CARD}{extra}")
        if not weights_p.is_file():
            raise BundleError(f"{path} is not a complete lablens bundle: {WEIGHTS} is missing")
        return card_p.read_bytes(), weights_p.read_bytes()
    if not path.is_file():
        raise BundleError(f"{path}: no such bundle folder or file")
    head = path.open("rb").read(8)
    _refuse_pickle(head, path.name)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            card_name = next((n for n in names if n.rsplit("/", 1)[-1] == CARD and n.count("/") <= 1), None)
            if card_name is None:
                if any(n.endswith("data.pkl") for n in names):
                    raise BundleError(
                        f"{path.name} is a PyTorch pickle archive (torch.save); lablens never unpickles model "
                        "files. Use a lablens bundle (weights.safetensors + card.json)."
                    )
                raise BundleError(f"{path.name} is a zip without {CARD}: not a lablens bundle")
            weights_name = card_name[: -len(CARD)] + WEIGHTS
            if weights_name not in names:
                raise BundleError(f"{path.name}: {WEIGHTS} is missing next to {CARD}")
            return zf.read(card_name), zf.read(weights_name)
    raise BundleError(
        f"{path.name} is not a lablens bundle (expected a folder or .zip with {CARD} and {WEIGHTS})"
    )


def read_bundle_files(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """``(card, tensors, bundle hash)`` of a verified bundle folder or zip; :class:`BundleError` says why not."""
    path = Path(path)
    card_bytes, weights_bytes = _read_members(path)
    try:
        card = json.loads(card_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: {CARD} is not valid JSON ({exc})") from exc
    if not isinstance(card, dict) or card.get("schema") != BUNDLE_SCHEMA:
        raise BundleError(f"{path}: {CARD} is not a lablens card (schema {BUNDLE_SCHEMA} expected)")
    recorded = (card.get("files") or {}).get(WEIGHTS, {}).get("sha256")
    actual = hashlib.sha256(weights_bytes).hexdigest()
    if recorded != actual:
        raise BundleError(
            f"{path}: {WEIGHTS} does not match the sha256 recorded in {CARD} "
            f"(recorded {str(recorded)[:16]}…, found {actual[:16]}…); the bundle was modified or is "
            "corrupt, so it is refused"
        )
    _refuse_pickle(weights_bytes[:8], WEIGHTS)
    try:
        tensors = load_safetensors_bytes(weights_bytes)
    except Exception as exc:
        raise BundleError(f"{path}: {WEIGHTS} is not a valid safetensors file ({exc})") from exc
    return card, tensors, hashlib.sha256(card_bytes).hexdigest()
