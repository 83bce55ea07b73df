"""``lablens export BUNDLE --format onnx``: the bundle's network as ONNX, checked against torch.

What is exported is the whole path from pixels to logits of one view: the graph takes ``N×S×S×3`` uint8
images (as the predictor feeds them), scales and normalises them with the bundle's mean/std and runs the
network. Test-time augmentation (the bundle's policy: off, full or adaptive, :mod:`lablens.nn.tta`) is
applied around the graph by :class:`~lablens.infer.onnx_runtime.OnnxRunner`, so adaptive TTA can give 8 views
to the uncertain images only. Exports from lablens before 0.2 (``lablens.onnx/1``) hold the 8 views inside the
graph and are still used as they are. Calibration (the temperature) stays outside, in the predictor, exactly as
for torch.

The export is accepted only when ONNX Runtime reproduces the torch probabilities on a check batch to within
``tolerance`` (default 1e-4, largest absolute difference over all images and classes); the figures are written
next to the model in ``onnx.json`` together with the bundle hash, so a predictor never pairs an ONNX file with
another bundle's card. Nothing in the bundle is changed: two files are added (``model.onnx``, ``onnx.json``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lablens import jsonio
from lablens.errors import LablensError
from lablens.evaluate.calibration import apply_temperature
from lablens.infer.bundle import Bundle, load_bundle
from lablens.infer.onnx_runtime import (
    ONNX_CARD,
    ONNX_FILE,
    OnnxModel,
    cache_folder,
    export_in,
    matching_onnx,
)
from lablens.models.deep import DeepClassifier
from lablens.nn.tta import estimator_policy

OPSET = 18
FORMAT = "lablens.onnx/2"
INPUT = "images"
OUTPUT = "logits"


class ExportError(LablensError):
    """The bundle cannot be exported, or the export does not reproduce torch; the message says why."""


class _PixelsToLogits(torch.nn.Module):
    """uint8 NHWC → normalised float NCHW → network → logits of that one view."""

    def __init__(self, net: torch.nn.Module, mean: tuple[float, ...], std: tuple[float, ...], views: int = 1):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.views = views

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 255.0
        total = None
        for k in range(self.views):
            y = self.net((dihedral_onnx(x, k) - self.mean) / self.std)
            total = y if total is None else total + y
        return total / self.views


def dihedral_onnx(x: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`lablens.nn.network.dihedral` from transposes and flips (ONNX has no ``rot90``)."""
    for _ in range(k % 4):  # one quarter turn counter-clockwise, as torch.rot90(x, 1, dims=(-2, -1))
        x = x.transpose(-2, -1).flip(-2)
    return x.flip(-1) if k >= 4 else x


@dataclass
class OnnxExport:
    path: Path
    card: dict[str, Any]


def check_batch(size: int, n: int = 16, seed: int = 0) -> np.ndarray:
    """A fixed batch for the parity check: noise at several smoothness levels (pixel-level and blob-like)."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = rng.integers(0, 256, (size, size, 3)).astype(np.float32)
        if i % 2:
            img = cv2.GaussianBlur(img, (0, 0), 1 + i % 5)
            img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6) * 255
        out.append(img.astype(np.uint8))
    return np.stack(out)


def _deep(bundle: Bundle) -> DeepClassifier:
    est = bundle.estimator
    if not type(est).capabilities.onnx:
        raise ExportError(
            f"{bundle.path}: ONNX export covers deep single-task bundles (timm networks); this bundle's "
            f"estimator is {type(est).__name__}. Its CPU predictions already run without torch's GPU path."
        )
    return est


def _target(bundle_path: str | Path, out: str | Path | None) -> tuple[Path, Path]:
    """The paths of ``model.onnx`` and ``onnx.json``, refused when either exists; makes their folder."""
    folder = Path(out) if out is not None else Path(bundle_path)
    if not folder.is_dir() and folder.suffix.lower() == ".zip":
        raise ExportError(f"{bundle_path} is a zip bundle; give --out FOLDER for the ONNX files")
    target, card_path = folder / ONNX_FILE, folder / ONNX_CARD
    for p in (target, card_path):
        if p.exists():
            raise ExportError(f"{p} exists; lablens does not overwrite files (give --out NEW_FOLDER)")
    folder.mkdir(parents=True, exist_ok=True)
    return target, card_path


def _torch_export(wrapper: torch.nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    """Write ``wrapper`` as an ONNX graph with a dynamic batch axis."""
    # The TorchScript exporter (dynamo=False): ~10x faster here than the torch.export-based one and exact
    # for these CNNs; its deprecation warning is silenced, and the parity check (_parity) guards either way.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        except torch.onnx.errors.OnnxExporterError as exc:  # an operator with no ONNX form, say
            raise ExportError(f"torch cannot export this network to ONNX ({exc})") from exc


def _parity(wrapper: torch.nn.Module, path: Path, bundle: Bundle, tolerance: float) -> dict[str, Any]:
    """Compare ONNX Runtime with torch on :func:`check_batch`; the card's ``parity`` figures, or ExportError."""
    import onnxruntime as ort

    batch = check_batch(bundle.image_size)
    with torch.no_grad():
        ref = wrapper(torch.from_numpy(batch)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT], {INPUT: batch})[0]
    t = bundle.temperature
    diff = float(np.abs(apply_temperature(ref, t) - apply_temperature(got, t)).max())
    logit_diff = float(np.abs(ref - got).max())
    if not diff <= tolerance:
        raise ExportError(
            f"ONNX Runtime differs from torch by {diff:.2e} in probability (> {tolerance:g}) on the check "
            "batch; the export was not kept"
        )
    return {
        "images": len(batch),
        "max_abs_prob_diff": diff,
        "max_abs_logit_diff": logit_diff,
        "tolerance": tolerance,
    }


def export_onnx(
    bundle_path: str | Path,
    out: str | Path | None = None,
    *,
    tolerance: float = 1e-4,
    opset: int = OPSET,
) -> OnnxExport:
    """Export a deep bundle to ONNX, check parity with ONNX Runtime, and write ``model.onnx`` + ``onnx.json``.

    Args:
        bundle_path: a bundle folder (or .zip, then ``out`` is required).
        out: folder for the two files (default: the bundle folder itself).
        tolerance: largest allowed absolute difference of calibrated probabilities, torch vs ONNX Runtime.
        opset: ONNX opset version.
    """
    import onnxruntime as ort

    bundle = load_bundle(bundle_path)
    est = _deep(bundle)
    target, card_path = _target(bundle_path, out)
    size = bundle.image_size
    wrapper = _PixelsToLogits(est.network_.to("cpu").eval(), est.mean_, est.std_).eval()
    example = torch.from_numpy(check_batch(size, n=2))
    t0 = time.perf_counter()
    tmp = target.with_name(target.name + ".partial")
    try:
        _torch_export(wrapper, example, tmp, opset)
        parity = _parity(wrapper, tmp, bundle, tolerance)
        tmp.rename(target)
    finally:
        tmp.unlink(missing_ok=True)
    card = {
        "format": FORMAT,
        "bundle_hash": bundle.hash,
        "arch": est.arch_,
        "classes": bundle.classes,
        "image_size": size,
        "input": {"name": INPUT, "shape": ["batch", size, size, 3], "dtype": "uint8", "layout": "NHWC"},
        "output": {"name": OUTPUT, "note": "uncalibrated logits; divide by temperature, then softmax"},
        "temperature": bundle.temperature,
        "graph_views": 1,
        "tta": estimator_policy(est).as_dict(),
        "opset": opset,
        "parity": parity,
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
        "export_seconds": round(time.perf_counter() - t0, 2),
    }
    jsonio.write_json(card_path, card)
    return OnnxExport(target, card)


def prepare_onnx(bundle: Bundle) -> tuple[OnnxModel | None, str | None]:
    """The explicit cache step before CPU inference: ``bundle``'s export in the lablens cache, made (and
    parity-checked) the first time. Returns the export, or None and the reason it could not be made (said to the
    user: torch then predicts, more slowly). A bundle that brings its own export, or whose family has no ONNX
    form, needs none: (None, None). The bundle itself is never touched."""
    if matching_onnx(bundle) is not None or not type(bundle.estimator).capabilities.onnx:
        return None, None
    folder = cache_folder(bundle)
    found = export_in(folder, bundle.hash)
    if found is not None:
        return found, None
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        export_onnx(bundle.path, tmp)
        os.replace(tmp, folder)
    except ExportError as exc:
        return None, f"ONNX Runtime not used for bundle {bundle.short_hash}: {exc}; predicting with torch"
    except OSError:
        pass  # another process put its export there first: use that one
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return export_in(folder, bundle.hash), None
