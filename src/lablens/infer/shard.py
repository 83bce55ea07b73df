"""One shard of an archive job, classified: its rows as a table.

Both engines (local and Ray) run exactly two steps on the same shards with the same batches, so they write the
same rows: :func:`~lablens.infer.decode.decode_shard` (CPU work), then :class:`ShardClassifier`, which holds the
model (and the quality gate) and turns a :class:`~lablens.infer.decode.DecodedShard` into an Arrow table, one
row per input file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from lablens.data.io import DecodeLimits, safe_display_name
from lablens.infer.decode import DecodedShard, Preprocessing
from lablens.infer.ood import DEFAULT_ALPHA, OUT_OF_DISTRIBUTION
from lablens.infer.predictor import CLASSIFIED, NOT_EVALUABLE, Scores
from lablens.nn.tta import TtaPolicy

SKIPPED = "skipped"
STATUSES = (CLASSIFIED, NOT_EVALUABLE, OUT_OF_DISTRIBUTION, SKIPPED)


@dataclass(frozen=True)
class ModelSpec:
    """Everything a process needs to build its :class:`ShardClassifier` (plain data: it travels to workers)."""

    bundle: str
    quality: str | None = None
    max_level: float = 2.5
    top_k: int = 3
    batch_size: int = 64
    device: str = "auto"
    backend: str = "auto"
    tta: TtaPolicy | None = None
    threads: int | None = None
    ood_alpha: float | None = DEFAULT_ALPHA


def schema(top_k: int) -> pa.Schema:
    """The columns of every shard: input order, file, outcome, ranked classes, quality, views, model, error."""
    fields = [
        pa.field("row", pa.int64()),
        pa.field("path", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("status", pa.string()),
    ]
    for i in range(1, top_k + 1):
        fields += [pa.field(f"class_{i}", pa.string()), pa.field(f"prob_{i}", pa.float64())]
    fields += [
        pa.field("quality_score", pa.float64()),
        pa.field("ood_score", pa.float64()),
        pa.field("tta_views", pa.int8()),
        pa.field("bundle_hash", pa.string()),
        pa.field("error_kind", pa.string()),
        pa.field("error_reason", pa.string()),
    ]
    return pa.schema(fields)


def load_for_worker(spec: ModelSpec) -> Any:
    """The spec's bundle, loaded in a worker process whose torch uses ``spec.threads`` threads."""
    from lablens.infer.bundle import load_bundle

    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    return load_bundle(spec.bundle)


class ShardClassifier:
    """The model side of a job: calibrated top-k classes (and quality) for each readable image of a shard."""

    def __init__(self, spec: ModelSpec, report: Callable[[str], None] | None = None) -> None:
        from lablens.infer.gate import QualityGate
        from lablens.infer.predictor import Predictor

        bundle = load_for_worker(spec)
        self.gate = QualityGate.for_bundle(bundle, spec.quality, spec.max_level)
        self.predictor = Predictor.prepared(
            bundle,
            report or logging.getLogger("lablens").warning,  # in a Ray actor: its log reaches the driver
            batch_size=spec.batch_size,
            device=spec.device,
            gate=self.gate,
            backend=spec.backend,
            tta=spec.tta,
            threads=spec.threads,
            ood_alpha=spec.ood_alpha,
        )
        self.bundle = bundle
        self.top_k = min(spec.top_k, len(bundle.classes))
        self.schema = schema(self.top_k)

    def preprocessing(self, limits: DecodeLimits | None = None) -> Preprocessing:
        return Preprocessing.for_bundle(self.bundle, self.gate, limits)

    def _scores(self, decoded: DecodedShard) -> Scores:
        n, bs = len(decoded.images), self.predictor.batch_size
        parts = []
        for start in range(0, n, bs):
            gate_crops = decoded.gate_crops[start : start + bs] if decoded.gate_crops is not None else None
            parts.append(self.predictor.gated_scores(decoded.images[start : start + bs], gate_crops))
        return Scores.concat(parts, len(self.bundle.classes))

    def __call__(self, decoded: DecodedShard) -> pa.Table:
        scores = self._scores(decoded)
        proba = scores.proba
        shard, n = decoded.shard, len(decoded.shard.paths)
        cols: dict[str, list[Any]] = {name: [None] * n for name in self.schema.names}
        cols["row"] = list(range(shard.first_row, shard.first_row + n))
        cols["path"] = [safe_display_name(p) for p in shard.paths]
        cols["sha256"] = list(decoded.sha256)
        cols["bundle_hash"] = [self.bundle.hash] * n
        cols["status"] = [SKIPPED] * n
        for i, err in enumerate(decoded.errors):
            if err is not None:
                cols["error_kind"][i], cols["error_reason"][i] = err
        classes = self.bundle.classes
        order = np.argsort(-np.nan_to_num(proba, nan=-1.0), axis=1, kind="stable")[:, : self.top_k]
        for j, pos in enumerate(decoded.ok):
            cols["tta_views"][pos] = int(scores.views[j])
            if scores.quality is not None:
                cols["quality_score"][pos] = float(scores.quality[j])
            if scores.ood is not None:
                cols["ood_score"][pos] = float(scores.ood[j])
            cols["status"][pos] = scores.status[j]
            if scores.status[j] != CLASSIFIED:
                continue
            for r, c in enumerate(order[j], start=1):
                cols[f"class_{r}"][pos] = classes[c]
                cols[f"prob_{r}"][pos] = float(proba[j, c])
        return pa.table(cols, schema=self.schema)
