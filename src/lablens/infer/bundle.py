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
import json
import os
import platform
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from lablens import __version__, jsonio
from lablens.errors import LablensError
from lablens.models.registry import create_estimator
from lablens.nn.tta import estimator_policy

BUNDLE_SCHEMA = "lablens.bundle/1"
WEIGHTS = "weights.safetensors"
CARD = "card.json"
# Runtime settings that cards written before lablens 0.2 stored among the estimator parameters; they are
# arguments of fit/predict now (FitContext), so loading such a card leaves them out.
RETIRED_PARAMS = ("device", "threads", "eval_batch_size", "checkpoint_dir", "resume", "progress")


class BundleError(LablensError):
    """A path that is not a usable lablens bundle; the message says why."""


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


def load_bundle(path: str | Path) -> Bundle:
    """Load and verify a bundle; raise :class:`BundleError` with the reason when it cannot be used."""
    path = Path(path)
    card, tensors, digest = read_bundle_files(path)
    if "detector" in card:
        raise BundleError(
            f"{path} is a field-detector bundle (lablens train-detector), not a classifier: give it to --detector"
        )
    est_info = card.get("estimator") or {}
    params = {k: v for k, v in (est_info.get("params") or {}).items() if k not in RETIRED_PARAMS}
    if "tta" in params and "tta_margin" not in params:
        params["tta_margin"] = None  # cards from before adaptive TTA: every image was seen in all 8 views
    try:
        estimator = create_estimator(est_info["name"], **params)
        estimator.import_state(tensors, card.get("model") or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path}: cannot rebuild the model from the card ({exc})") from exc
    return Bundle(path, card, estimator, digest)


def zip_bundle(bundle_dir: str | Path, zip_path: str | Path) -> Path:
    """Pack a bundle folder into a zip (stored, not compressed; weights barely compress)."""
    bundle_dir, zip_path = Path(bundle_dir), Path(zip_path)
    if zip_path.exists():
        raise BundleError(f"{zip_path} exists; not overwritten")
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in (CARD, WEIGHTS):
            zf.write(bundle_dir / name, arcname=name)
    return zip_path
