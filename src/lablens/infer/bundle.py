"""Model bundles: a folder (or zip) holding ``weights.safetensors`` and ``card.json``.

The card records everything needed to use and audit the model: classes, preprocessing, estimator
and architecture, calibration temperature, the resolved training config, the data-manifest hash, the
split, metrics with CIs and package versions, plus the sha256 of the weights. Loading never unpickles:
weights are read with safetensors, a pickle-based file is recognised and refused, and a bundle whose
weights do not match the recorded hash is refused. The bundle hash (sha256 of ``card.json``, which
contains the weights hash) identifies the model in every prediction.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as save_safetensors_bytes

from lablens import __version__, jsonio
from lablens.bundle_files import BUNDLE_SCHEMA, CARD, WEIGHTS, BundleError, read_bundle_files
from lablens.models.from_card import estimator_from_card
from lablens.nn.tta import estimator_policy


@dataclass
class Bundle:
    """A loaded, verified bundle with its fitted estimator."""

    path: Path
    card: dict[str, Any]
    estimator: Any
    hash: str

    @property
    def classes(self) -> list[str]:
        return list(self.card["classes"])

    @property
    def image_size(self) -> int:
        return int(self.card["preprocessing"]["image_size"])

    @property
    def resize_mode(self) -> str:
        return str(self.card["preprocessing"]["resize_mode"])

    @property
    def inputs(self) -> str:
        """``images`` (one image per call) or ``bags`` (a sample's cells per call)."""
        return str(self.card.get("inputs") or "images")

    @property
    def crop(self) -> dict[str, Any] | None:
        """The crop geometry of the training images, when the card records it."""
        return (self.card.get("preprocessing") or {}).get("crop")

    @property
    def temperature(self) -> float:
        return float((self.card.get("calibration") or {}).get("temperature") or 1.0)

    @property
    def short_hash(self) -> str:
        return self.hash[:16]


def package_versions() -> dict[str, str]:
    import sklearn
    import timm

    return {
        "lablens": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(terse=True),
    }


def card_params(estimator: Any) -> dict[str, Any]:
    """The estimator's parameters as its family declares them, JSON-ready (what a card records)."""
    return type(estimator).Params.model_validate(estimator.get_params()).model_dump(mode="json")


def save_bundle(
    out_dir: str | Path,
    estimator: Any,
    *,
    estimator_name: str,
    image_size: int,
    resize_mode: str,
    temperature: float = 1.0,
    calibration: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    crop: dict[str, Any] | None = None,
    ood: dict[str, Any] | None = None,
) -> Bundle:
    """Write ``out_dir/weights.safetensors`` and ``out_dir/card.json``; refuse to overwrite a bundle.

    ``calibration`` (a :class:`~lablens.train.calibrate.Calibration` as a dict) records where the temperature
    was fitted; without it the card holds ``temperature`` alone. ``crop`` is the
    :class:`~lablens.fields.cell_crops.CropGeometry` of the training images, when known; ``ood`` the
    :class:`~lablens.infer.ood.OodSummary` of the training images (``to_card()``), when fitted.
    """
    tensors, meta = estimator.export_state()
    card = {
        "schema": BUNDLE_SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "classes": [str(c) for c in estimator.classes_],
        "estimator": {"name": estimator_name, "params": card_params(estimator)},
        "model": meta,
        "preprocessing": {
            "image_size": int(image_size),
            "resize_mode": resize_mode,
            "mean": list(meta.get("mean", [])),
            "std": list(meta.get("std", [])),
            "colour": "RGB; greyscale replicated; alpha dropped; 16-bit mapped linearly to 8-bit",
            "crop": crop,
        },
        "inputs": type(estimator).capabilities.inputs,
        "inference": {"tta": estimator_policy(estimator).as_dict()},
        "calibration": calibration or {"method": "temperature", "temperature": float(temperature)},
        "training": training or {},
        "metrics": metrics or {},
    }
    if ood is not None:
        card["ood"] = ood
    if meta.get("init"):  # a warm start: the bundle it began from and how its classes were mapped
        card["init"] = meta["init"]
    card, digest = write_bundle_files(out_dir, tensors, card)
    return Bundle(out_dir, card, estimator, digest)


def write_bundle_files(
    out_dir: str | Path, tensors: dict[str, Any], card: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """Write ``tensors`` and ``card`` (completed with versions and the weights' sha256) as a bundle folder,
    atomically, never over an existing one; return the written card and the bundle hash."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise BundleError(f"{out_dir} exists; a bundle is never overwritten")
    tensors = {
        k: torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v).contiguous()
        for k, v in tensors.items()
    }
    weights_bytes = save_safetensors_bytes(tensors, metadata={"format": "lablens", "schema": BUNDLE_SCHEMA})
    card = {
        **card,
        "versions": package_versions(),
        "files": {
            WEIGHTS: {"sha256": hashlib.sha256(weights_bytes).hexdigest(), "bytes": len(weights_bytes)}
        },
    }
    card_bytes = jsonio.dumps(card, indent=1, sort_keys=False).encode("utf-8")
    # Write into a hidden sibling and rename: a killed run never leaves a half-written bundle.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    (tmp / WEIGHTS).write_bytes(weights_bytes)
    (tmp / CARD).write_bytes(card_bytes)
    os.replace(tmp, out_dir)
    return card, hashlib.sha256(card_bytes).hexdigest()


def load_bundle(path: str | Path) -> Bundle:
    """Load and verify a bundle; raise :class:`BundleError` with the reason when it cannot be used."""
    path = Path(path)
    card, tensors, digest = read_bundle_files(path)
    return Bundle(path, card, estimator_from_card(path, card, tensors), digest)


def zip_bundle(bundle_dir: str | Path, zip_path: str | Path) -> Path:
    """Pack a bundle folder into a zip (stored, not compressed; weights barely compress)."""
    bundle_dir, zip_path = Path(bundle_dir), Path(zip_path)
    if zip_path.exists():
        raise BundleError(f"{zip_path} exists; not overwritten")
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in (CARD, WEIGHTS):
            zf.write(bundle_dir / name, arcname=name)
    return zip_path
