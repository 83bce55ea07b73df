"""Predict: image files or folders → ranked, calibrated class probabilities per image.

The exact preprocessing recorded in the bundle's card is applied (decode → RGB → ``to_square``), images
are classified in batches, probabilities are temperature-calibrated, and every row carries the bundle
hash. Files that cannot be read are reported with their reason and skipped. With a quality gate
(:class:`~lablens.quality.gate.QualityGate`) every row also carries its quality score, and an image above the
gate's blur level is reported as not evaluable: its probabilities are NaN and no class is given.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lablens.data.io import SUPPORTED_SUFFIXES, DecodeLimits, safe_display_name, walk_files
from lablens.data.validate import Problem
from lablens.infer.bundle import Bundle
from lablens.infer.tta import TtaPolicy, estimator_policy
from lablens.progress import SilentProgress

if TYPE_CHECKING:
    from lablens.quality.gate import QualityGate


def softmax_t(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits / max(float(temperature), 1e-6)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class PredictionResult:
    """Rows in input order (one per readable image) and the skipped inputs."""

    bundle_hash: str
    classes: list[str]
    paths: list[str] = field(default_factory=list)
    proba: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    skipped: list[Problem] = field(default_factory=list)
    quality: np.ndarray | None = None  # expected blur level per row, when a quality gate was used
    max_level: float | None = None

    @property
    def evaluable(self) -> np.ndarray:
        """Per row: False when the quality gate judged the image too blurred to classify."""
        if self.quality is None or self.max_level is None:
            return np.ones(len(self.paths), dtype=bool)
        return self.quality <= self.max_level

    @property
    def n_not_evaluable(self) -> int:
        return int((~self.evaluable).sum())

    def ranked(self, top_k: int) -> list[list[tuple[str, float]]]:
        """Top-k (class, probability) per row; an empty list for a row that is not evaluable."""
        k = min(top_k, len(self.classes))
        order = np.argsort(-np.nan_to_num(self.proba, nan=-1.0), axis=1, kind="stable")[:, :k]
        ok = self.evaluable
        return [
            [(self.classes[j], float(self.proba[i, j])) for j in row] if ok[i] else []
            for i, row in enumerate(order)
        ]


def _set_policy(bundle: Bundle, policy: TtaPolicy) -> None:
    """Make the bundle's estimator predict with ``policy``; refuse when the model has no TTA setting."""
    est = bundle.estimator
    if "tta" not in est.get_params():
        if policy.views == 1:
            return
        raise ValueError(
            f"{bundle.path}: --tta {policy.name} does not apply: this model ({type(est).__name__}) has no "
            "test-time augmentation"
        )
    est.set_params(**policy.params())


def expand_inputs(inputs: Iterable[str | Path]) -> tuple[list[Path], list[Problem]]:
    """Files stay; folders are searched recursively for supported images (hidden entries skipped)."""
    files: list[Path] = []
    problems: list[Problem] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(f for f in walk_files(p) if f.suffix.lower() in SUPPORTED_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            problems.append(Problem(str(p), "missing_file", "no such file or folder"))
    return files, problems


class Predictor:
    """Classifies images with a loaded bundle.

    ``backend``: ``torch``, ``onnx`` (ONNX Runtime, CPU; needs ``lablens export --format onnx`` first) or
    ``auto``: on the CPU, ONNX Runtime with the bundle's own export or one made once into the lablens cache
    (deep single-task bundles), else torch.
    ``tta`` overrides the bundle's test-time-augmentation policy (:mod:`lablens.infer.tta`); every prediction
    still carries the bundle hash, and the views each image got are reported. ``threads`` caps ONNX Runtime's
    threads (default: all cores).
    """

    def __init__(
        self,
        bundle: Bundle,
        batch_size: int = 64,
        device: str = "auto",
        gate: QualityGate | None = None,
        backend: str = "auto",
        tta: TtaPolicy | None = None,
        threads: int | None = None,
    ) -> None:
        from lablens.device import resolve_device
        from lablens.infer.onnx_runtime import BACKENDS, OnnxRunner, cached_onnx, matching_onnx

        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        self.bundle = bundle
        self.gate = gate
        self.batch_size = batch_size
        self.device = device
        if tta is not None:
            _set_policy(bundle, tta)
        onnx_model = matching_onnx(bundle)
        if backend == "onnx" and onnx_model is None:
            raise ValueError(
                f"{bundle.path}: no ONNX export of this bundle; run `lablens export {bundle.path} --format onnx`"
            )
        on_cpu = resolve_device(device).type == "cpu"
        if backend == "auto" and on_cpu and onnx_model is None:
            onnx_model = cached_onnx(bundle)  # exported once into the cache: several times faster on a CPU
        use_onnx = backend == "onnx" or (backend == "auto" and onnx_model is not None and on_cpu)
        policy = estimator_policy(bundle.estimator)
        self._onnx = (
            OnnxRunner(onnx_model, batch_size, threads=threads, policy=policy)
            if use_onnx and onnx_model is not None
            else None
        )
        self.backend = "onnx" if self._onnx is not None else "torch"
        self.policy = self._onnx.policy if self._onnx is not None else policy

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Uncalibrated logits for ``N×S×S×3`` uint8 images already at the bundle's size."""
        return self.logits_and_views(images)[0]

    def logits_and_views(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated logits, and the number of test-time views each image got."""
        n_classes = len(self.bundle.classes)
        if len(images) == 0:
            return np.zeros((0, n_classes)), np.zeros(0, dtype=np.int8)
        images = np.asarray(images)
        est = self.bundle.estimator
        if self._onnx is not None:
            return self._onnx.logits_and_views(est.resize_images(images.astype(np.uint8, copy=False)))
        if hasattr(est, "outputs"):
            out = est.outputs(images, device=self.device, batch_size=self.batch_size)
            views = out.get("tta_views")
            if views is None:
                views = np.full(len(images), self.policy.views)
            return out["logits"], np.asarray(views, dtype=np.int8)
        logits = est.predict_logits(images, device=self.device, batch_size=self.batch_size)
        return logits, np.ones(len(images), dtype=np.int8)

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for ``N×S×S×3`` uint8 images already at the bundle's size."""
        return softmax_t(self.logits(images), self.bundle.temperature)

    def gated_scores(
        self, images: np.ndarray, gate_crops: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Calibrated probabilities (NaN rows: not evaluable under the quality gate), test-time views, and the
        quality scores of ``gate_crops`` (the same images at the gate's size; None without a gate)."""
        logits, views = self.logits_and_views(images)
        proba = softmax_t(logits, self.bundle.temperature)
        if self.gate is None or gate_crops is None:
            return proba, views, None
        score = self.gate.score_crops(gate_crops)
        proba[~self.gate.evaluable(score)] = np.nan  # not evaluable: no class is given
        return proba, views, score

    def predict_files(
        self,
        inputs: Iterable[str | Path],
        progress: Any = None,
        limits: DecodeLimits | None = None,
        workers: int = 2,
    ) -> PredictionResult:
        """Classify every readable image of ``inputs`` (files and folders) in memory: for small jobs; an archive
        streams to Parquet shards instead (:mod:`lablens.workflows.predict_archive`)."""
        from lablens.infer.shard import Preprocessing, Shard, decode_shard

        progress = progress or SilentProgress()
        files, skipped = expand_inputs(inputs)
        result = PredictionResult(self.bundle.hash, self.bundle.classes, skipped=skipped)
        prep = Preprocessing.for_bundle(self.bundle, self.gate, limits)
        task = progress.task("predict", len(files))
        probas: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        for start in range(0, len(files), self.batch_size):
            chunk = [str(f) for f in files[start : start + self.batch_size]]
            decoded = decode_shard(Shard(0, start, chunk), prep, workers)
            for path, err in zip(chunk, decoded.errors, strict=True):
                if err is not None:
                    result.skipped.append(Problem(safe_display_name(path), *err))
            proba, _, score = self.gated_scores(decoded.images, decoded.gate_crops)
            if score is not None:
                scores.append(score)
            probas.append(proba)
            result.paths.extend(chunk[i] for i in decoded.ok)
            task.advance(len(chunk))
        task.done()
        n_classes = len(self.bundle.classes)
        result.proba = np.concatenate(probas) if probas else np.zeros((0, n_classes))
        if self.gate is not None:
            result.quality = np.concatenate(scores) if scores else np.zeros(0)
            result.max_level = self.gate.max_level
        return result


def _status(result: PredictionResult) -> list[str]:
    return ["classified" if ok else "not_evaluable" for ok in result.evaluable]


def write_predictions(result: PredictionResult, out: str | Path, top_k: int, bundle: Bundle) -> Path:
    """CSV (one row per image: ``path, class_1, prob_1, … , bundle_hash``) or JSON by the suffix.

    With a quality gate, rows also carry ``status`` (``classified`` | ``not_evaluable``) and
    ``quality_score`` (expected blur level); a not-evaluable row has no classes.
    """
    out = Path(out)
    ranked = result.ranked(top_k)
    k = min(top_k, len(result.classes))
    gated = result.quality is not None
    status = _status(result)
    if out.suffix.lower() == ".json":
        rows = []
        for i, (p, r) in enumerate(zip(result.paths, ranked, strict=True)):
            row: dict[str, Any] = {"path": p}
            if gated:
                row["status"] = status[i]
                row["quality_score"] = round(float(result.quality[i]), 4)  # type: ignore[index]
            row["ranked"] = [{"class": c, "probability": round(pr, 6)} for c, pr in r]
            row["bundle_hash"] = result.bundle_hash
            rows.append(row)
        doc = {
            "bundle": {
                "hash": result.bundle_hash,
                "path": str(bundle.path),
                "classes": result.classes,
                "temperature": bundle.temperature,
            },
            "top_k": k,
            "quality_gate": {"max_level": result.max_level, "not_evaluable": result.n_not_evaluable}
            if gated
            else None,
            "predictions": rows,
            "skipped": [{"path": s.path, "kind": s.kind, "reason": s.reason} for s in result.skipped],
        }
        out.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        return out
    if result.skipped:  # CSV rows cannot hold them: list skipped inputs beside the predictions
        with out.with_name(out.stem + ".skipped.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "kind", "reason"])
            w.writerows([s.path, s.kind, s.reason] for s in result.skipped)
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        header = ["path", *(["status", "quality_score"] if gated else [])]
        for i in range(1, k + 1):
            header += [f"class_{i}", f"prob_{i}"]
        w.writerow([*header, "bundle_hash"])
        for i, (p, r) in enumerate(zip(result.paths, ranked, strict=True)):
            cells: list[Any] = [p]
            if gated:
                cells += [status[i], f"{result.quality[i]:.4f}"]  # type: ignore[index]
            for c, pr in r:
                cells += [c, f"{pr:.6f}"]
            cells += [""] * (2 * (k - len(r)))
            w.writerow([*cells, result.bundle_hash])
    return out
