"""ONNX Runtime inference for a bundle exported with ``lablens export --format onnx``.

The predictor uses it on CPU when the bundle folder holds ``model.onnx`` and an ``onnx.json`` whose bundle hash
is this bundle's (an ONNX file left over from another model is never used), else the export that the explicit
cache step :func:`lablens.infer.onnx_export.prepare_onnx` made in the lablens cache (:func:`cached_onnx`).
Inference itself never exports. The graph gives the logits of one view; the runner applies the
test-time-augmentation policy around it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lablens.infer.bundle import Bundle
from lablens.nn.tta import VIEWS, TtaPolicy, dihedral_nhwc, escalated

ONNX_FILE = "model.onnx"
ONNX_CARD = "onnx.json"
BACKENDS = ("auto", "torch", "onnx")


@dataclass(frozen=True)
class OnnxModel:
    """An export found beside a bundle: the file and how many views its graph averages itself."""

    path: Path
    graph_views: int = 1


def export_in(folder: Path, bundle_hash: str) -> OnnxModel | None:
    model, card = folder / ONNX_FILE, folder / ONNX_CARD
    if not (folder.is_dir() and model.is_file() and card.is_file()):
        return None
    try:
        doc = json.loads(card.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if doc.get("bundle_hash") != bundle_hash:
        return None
    # lablens.onnx/1 put the bundle's 8 TTA views inside the graph; /2 graphs see one view
    legacy_views = VIEWS if doc.get("tta") is True else 1
    return OnnxModel(model, int(doc.get("graph_views", legacy_views)))


def matching_onnx(bundle: Bundle) -> OnnxModel | None:
    """The bundle's exported ONNX model when present and made from this very bundle, else ``None``."""
    return export_in(Path(bundle.path), bundle.hash)


def cache_folder(bundle: Bundle) -> Path:
    """Where :func:`lablens.infer.onnx_export.prepare_onnx` keeps the bundle's export (named by its hash)."""
    from lablens.data.cache import default_cache_dir

    return default_cache_dir() / "onnx" / bundle.hash[:32]


def cached_onnx(bundle: Bundle) -> OnnxModel | None:
    """The export of ``bundle`` in the lablens cache when one was made (read only: nothing is exported here)."""
    return export_in(cache_folder(bundle), bundle.hash)


class OnnxRunner:
    """Logits from an exported model with ONNX Runtime (CPU), batch by batch, under a TTA policy."""

    def __init__(
        self,
        model: OnnxModel,
        batch_size: int = 64,
        threads: int | None = None,
        policy: TtaPolicy | None = None,
    ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.path = model.path
        self.session = ort.InferenceSession(str(model.path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.batch_size = batch_size
        # a graph that averages its own views is used as it is: the policy it was exported with
        self.graph_views = model.graph_views
        self.policy = TtaPolicy(VIEWS) if model.graph_views > 1 else (policy or TtaPolicy())

    def _run(self, images: np.ndarray) -> np.ndarray:
        out = [
            self.session.run(None, {self.input: np.ascontiguousarray(images[i : i + self.batch_size])})[0]
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(out).astype(np.float32)

    def logits_and_views(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits under the policy and the number of views each image got."""
        logits = self._run(images)
        views = np.full(len(images), self.graph_views, dtype=np.int8)
        if self.graph_views > 1 or self.policy.views == 1 or len(images) == 0:
            return logits, views
        esc = (
            np.ones(len(images), dtype=bool)
            if self.policy.margin is None
            else escalated(logits, self.policy.margin)
        )
        if esc.any():
            sub = images[esc]
            total = logits[esc].copy()
            for k in range(1, VIEWS):
                total += self._run(dihedral_nhwc(sub, k))
            logits[esc] = total / VIEWS
            views[esc] = VIEWS
        return logits, views

    def logits(self, images: np.ndarray) -> np.ndarray:
        return self.logits_and_views(images)[0]
