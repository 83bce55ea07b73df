"""Decoding a shard of an archive job: read, hash, decode, check and resize its files (CPU work, no model).

:func:`decode_shard` applies the ingestion rules and messages of :func:`~lablens.data.io.read_image` to every file
of a :class:`Shard` and gives a :class:`DecodedShard`: the readable images at the model's size (and the quality
gate's) and, per input, its sha256 or the reason it was skipped. Both engines (local and Ray) and small
in-memory predictions decode this way.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lablens import jsonio
from lablens.data.io import DecodeLimits, ImageError, is_valid_utf8_name, read_image
from lablens.data.preprocess import to_square


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
