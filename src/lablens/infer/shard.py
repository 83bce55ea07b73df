"""One shard of an archive job: decode its files, classify the readable ones, return its rows as a table.

Both engines (local and Ray) run exactly these two steps on the same shards with the same batches, so they
write the same rows. :func:`decode_shard` is CPU work (read, hash, decode, check, resize: the ingestion rules
and messages of :func:`~lablens.data.io.read_image`); :class:`ShardClassifier` holds the model (and the quality
gate) and turns a :class:`DecodedShard` into an Arrow table, one row per input file.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lablens import jsonio
from lablens.data.io import DecodeLimits, ImageError, is_valid_utf8_name, read_image, safe_display_name
from lablens.data.preprocess import to_square
from lablens.infer.ood import DEFAULT_ALPHA, OUT_OF_DISTRIBUTION
from lablens.infer.predictor import CLASSIFIED, NOT_EVALUABLE, Scores
from lablens.infer.tta import TtaPolicy

SKIPPED = "skipped"
STATUSES = (CLASSIFIED, NOT_EVALUABLE, OUT_OF_DISTRIBUTION, SKIPPED)


@dataclass(frozen=True)
class Shard:
    """``paths`` of the job's inputs ``first_row`` … ``first_row + len(paths) - 1``."""

    index: int
    first_row: int
    paths: list[str]


@dataclass(frozen=True)
class Preprocessing:
    """How every image is prepared: the bundle's square size and resize mode (and the quality gate's)."""

    size: int
    mode: str
    gate_size: int | None = None
    gate_mode: str | None = None
    limits: DecodeLimits = field(default_factory=DecodeLimits)

    @classmethod
    def for_bundle(cls, bundle: Any, gate: Any = None, limits: DecodeLimits | None = None) -> Preprocessing:
        """What ``bundle`` (and its quality ``gate``, when there is one) expect."""
        g = gate.bundle if gate is not None else None
        return cls(
            bundle.image_size,
            bundle.resize_mode,
            g.image_size if g is not None else None,
            g.resize_mode if g is not None else None,
            limits or DecodeLimits(),
        )


@dataclass
class DecodedShard:
    """A shard after decoding: the readable images at the model's size, and per input its hash or error."""

    shard: Shard
    images: np.ndarray  # n_ok × S × S × 3 uint8, in input order
    gate_crops: np.ndarray | None  # n_ok × G × G × 3 uint8 when a quality gate is used
    ok: np.ndarray  # positions (within the shard) of the readable inputs
    sha256: list[str | None]
    errors: list[tuple[str, str] | None]  # (kind, reason) per input; None when readable

    def to_bytes(self) -> bytes:
        """A pickle-free serialisation (NumPy ``.npz`` with a JSON header), for moving shards between processes."""
        meta = {
            "index": self.shard.index,
            "first_row": self.shard.first_row,
            "paths": self.shard.paths,
            "sha256": self.sha256,
            "errors": self.errors,
        }
        buf = io.BytesIO()
        arrays = {"images": self.images, "ok": self.ok, "meta": np.frombuffer(_dumps(meta), dtype=np.uint8)}
        if self.gate_crops is not None:
            arrays["gate_crops"] = self.gate_crops
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> DecodedShard:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8", "surrogatepass"))
            gate = z["gate_crops"] if "gate_crops" in z.files else None
            return cls(
                Shard(meta["index"], meta["first_row"], meta["paths"]),
                z["images"],
                gate,
                z["ok"],
                meta["sha256"],
                [tuple(e) if e is not None else None for e in meta["errors"]],
            )


def _dumps(doc: Any) -> bytes:
    # paths may hold undecodable bytes (kept by Python as lone surrogates); they survive the round trip
    return jsonio.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _decode_one(path: str, prep: Preprocessing) -> tuple[np.ndarray, np.ndarray | None, str] | ImageError:
    if not is_valid_utf8_name(path):
        return ImageError("bad_name", "file name is not valid UTF-8; rename the file")
    p = Path(path)
    if not p.exists():
        return ImageError("missing_file", "no such file or folder")
    if p.is_dir():
        return ImageError("unreadable", "a folder inside a list of files (give folders as sources)")
    try:
        img = read_image(p, prep.limits)
    except ImageError as exc:
        return exc
    crop = to_square(img.pixels, prep.size, prep.mode)
    gate = to_square(img.pixels, prep.gate_size, prep.gate_mode or "pad") if prep.gate_size else None
    return crop, gate, img.sha256


def decode_shard(shard: Shard, prep: Preprocessing, workers: int = 2) -> DecodedShard:
    """Read and decode every file of ``shard`` (``workers`` threads: decoding releases the GIL)."""
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda p: _decode_one(p, prep), shard.paths))
    else:
        results = [_decode_one(p, prep) for p in shard.paths]
    crops, gates, ok, sha, errors = [], [], [], [], []
    for i, res in enumerate(results):
        if isinstance(res, ImageError):
            sha.append(None)
            errors.append((res.kind, res.reason))
            continue
        crops.append(res[0])
        if res[1] is not None:
            gates.append(res[1])
        ok.append(i)
        sha.append(res[2])
        errors.append(None)
    images = np.stack(crops) if crops else np.zeros((0, prep.size, prep.size, 3), dtype=np.uint8)
    gate_crops = None
    if prep.gate_size:
        gate_crops = np.stack(gates) if gates else np.zeros((0, prep.gate_size, prep.gate_size, 3), np.uint8)
    return DecodedShard(shard, images, gate_crops, np.asarray(ok, dtype=np.int64), sha, errors)


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

    def __init__(self, spec: ModelSpec) -> None:
        from lablens.infer.predictor import Predictor
        from lablens.quality.gate import QualityGate

        bundle = load_for_worker(spec)
        self.gate = QualityGate.for_bundle(bundle, spec.quality, spec.max_level)
        self.predictor = Predictor(
            bundle,
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
