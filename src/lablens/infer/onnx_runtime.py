"""ONNX Runtime inference for a bundle exported with ``lablens export --format onnx``.

The predictor uses it automatically on CPU when the bundle folder holds ``model.onnx`` and an ``onnx.json``
whose bundle hash is this bundle's (an ONNX file left over from another model is never used).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lablens.infer.bundle import Bundle

ONNX_FILE = "model.onnx"
ONNX_CARD = "onnx.json"
BACKENDS = ("auto", "torch", "onnx")


def matching_onnx(bundle: Bundle) -> Path | None:
    """The bundle's exported ONNX model when present and made from this very bundle, else ``None``."""
    folder = Path(bundle.path)
    model, card = folder / ONNX_FILE, folder / ONNX_CARD
    if not (folder.is_dir() and model.is_file() and card.is_file()):
        return None
    try:
        doc = json.loads(card.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return model if doc.get("bundle_hash") == bundle.hash else None


class OnnxRunner:
    """Logits from an exported model with ONNX Runtime (CPU), batch by batch."""

    def __init__(self, model: str | Path, batch_size: int = 64, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.batch_size = batch_size

    def logits(self, images: np.ndarray) -> np.ndarray:
        out = [
            self.session.run(None, {self.input: np.ascontiguousarray(images[i : i + self.batch_size])})[0]
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(out).astype(np.float32)
