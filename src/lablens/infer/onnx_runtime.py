"""ONNX Runtime inference for a bundle exported with ``lablens export --format onnx``.

The predictor uses it automatically on CPU when the bundle folder holds ``model.onnx`` and an ``onnx.json``
whose bundle hash is this bundle's (an ONNX file left over from another model is never used), else an export
it makes once into the lablens cache (:func:`cached_onnx`). The graph gives the logits of one view; the runner
applies the test-time-augmentation policy around it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lablens.infer.bundle import Bundle
from lablens.infer.tta import VIEWS, TtaPolicy, dihedral_nhwc, escalated

ONNX_FILE = "model.onnx"
ONNX_CARD = "onnx.json"
BACKENDS = ("auto", "torch", "onnx")


@dataclass(frozen=True)
class OnnxModel:
    """An export found beside a bundle: the file and how many views its graph averages itself."""

    path: Path
    graph_views: int = 1


def _export_in(folder: Path, bundle_hash: str) -> OnnxModel | None:
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
    return _export_in(Path(bundle.path), bundle.hash)


def cached_onnx(bundle: Bundle) -> OnnxModel | None:
    """An export of ``bundle`` in the lablens cache, made (and parity-checked) on first use; ``None`` when the
    model cannot be exported (not a single-task timm network) or its export does not reproduce torch.

    The bundle itself is never touched; the cache folder is named by the bundle hash.
    """
    from lablens.data.cache import default_cache_dir

    folder = default_cache_dir() / "onnx" / bundle.hash[:32]
    found = _export_in(folder, bundle.hash)
    if found is not None or not type(bundle.estimator).capabilities.onnx:
        return found
    from lablens.export.onnx import export_onnx

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        export_onnx(bundle.path, tmp)
        os.replace(tmp, folder)
    except OSError:
        pass  # another process put its export there first: use that one
    except Exception:  # any export or parity failure: torch predicts instead, as without ONNX
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _export_in(folder, bundle.hash)


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
