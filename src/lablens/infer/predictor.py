"""Predict: image files or folders → ranked, calibrated class probabilities per image.

The exact preprocessing recorded in the bundle's card is applied (decode → RGB → ``to_square``), images
are classified in batches, probabilities are temperature-calibrated, and every row carries the bundle
hash. Files that cannot be read are reported with their reason and skipped. With a quality gate
(:class:`~lablens.infer.gate.QualityGate`) every row also carries its quality score, and an image above the
gate's blur level is reported as not evaluable: no class is given. A bundle with an out-of-distribution summary
(:mod:`lablens.infer.ood`) scores every image against its training images: one that does not look like them is
reported as out of distribution (no class given), and the whole submission is judged too.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lablens import jsonio
from lablens.data.io import SUPPORTED_SUFFIXES, DecodeLimits, safe_display_name, walk_files
from lablens.data.validate import Problem
from lablens.errors import SettingError
from lablens.evaluate.calibration import apply_temperature
from lablens.infer.bundle import Bundle
from lablens.infer.ood import DEFAULT_ALPHA, OUT_OF_DISTRIBUTION, OodGuard, SubmissionCheck
from lablens.nn.tta import TtaPolicy, estimator_policy
from lablens.progress import SilentProgress

if TYPE_CHECKING:
    from lablens.infer.gate import QualityGate


CLASSIFIED, NOT_EVALUABLE = "classified", "not_evaluable"


@dataclass
class Scores:
    """What a predictor says of a batch: calibrated probabilities (kept for every row), test-time views, quality
    scores (with a gate), OOD scores (with a guard) and each row's status: ``classified``, ``not_evaluable``
    (quality gate; it wins) or ``out_of_distribution``."""

    proba: np.ndarray
    views: np.ndarray
    quality: np.ndarray | None
    ood: np.ndarray | None
    status: np.ndarray

    @classmethod
    def concat(cls, parts: list[Scores], n_classes: int) -> Scores:
        if not parts:
            return cls(np.zeros((0, n_classes)), np.zeros(0, np.int8), None, None, np.zeros(0, dtype=object))

        def cat(name: str) -> np.ndarray | None:
            values = [getattr(p, name) for p in parts]
            return None if values[0] is None else np.concatenate(values)

        return cls(cat("proba"), cat("views"), cat("quality"), cat("ood"), cat("status"))  # type: ignore[arg-type]


def top_probabilities(proba: np.ndarray, status: np.ndarray) -> np.ndarray:
    """The top-class probability of each classified row (what the guard's confidence rule looks at)."""
    rows = np.asarray(status) == CLASSIFIED
    return proba[rows].max(axis=1) if rows.any() else np.zeros(0)


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
    status: np.ndarray | None = None  # per row, see Scores
    ood: np.ndarray | None = None  # OOD score per row, when the bundle's guard was used
    ood_guard: dict[str, Any] | None = None  # alpha, threshold, images it was fitted on
    ood_check: SubmissionCheck | None = None  # the verdict on all rows together

    @property
    def evaluable(self) -> np.ndarray:
        """Per row: False when the image was given no class (not evaluable, or out of distribution)."""
        if self.status is None:
            return np.ones(len(self.paths), dtype=bool)
        return self.status == CLASSIFIED

    @property
    def n_not_evaluable(self) -> int:
        return 0 if self.status is None else int((self.status == NOT_EVALUABLE).sum())

    @property
    def n_out_of_distribution(self) -> int:
        return 0 if self.status is None else int((self.status == OUT_OF_DISTRIBUTION).sum())

    def ranked(self, top_k: int) -> list[list[tuple[str, float]]]:
        """Top-k (class, probability) per row; an empty list for a row given no class."""
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
        raise SettingError(
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
    ``auto``: on the CPU, ONNX Runtime with the bundle's own export or the one the cache step
    :func:`~lablens.infer.onnx_export.prepare_onnx` made (deep single-task bundles), else torch. The predictor
    never exports: :meth:`prepared` runs that step first and says why it failed when it did.
    ``tta`` overrides the bundle's test-time-augmentation policy (:mod:`lablens.nn.tta`); every prediction
    still carries the bundle hash, and the views each image got are reported. ``threads`` caps ONNX Runtime's
    threads (default: all cores). ``ood_alpha`` is the out-of-distribution guard's flag rate on images like the
    training images (None: guard off; bundles without an OOD summary have none).
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
        ood_alpha: float | None = DEFAULT_ALPHA,
    ) -> None:
        from lablens.device import resolve_device
        from lablens.infer.onnx_runtime import BACKENDS, OnnxRunner, cached_onnx, matching_onnx

        if backend not in BACKENDS:
            raise SettingError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        self.bundle = bundle
        self.gate = gate
        self.ood = OodGuard.for_bundle(bundle, ood_alpha)
        self.batch_size = batch_size
        self.device = device
        if tta is not None:
            _set_policy(bundle, tta)
        onnx_model = matching_onnx(bundle)
        if backend == "onnx" and onnx_model is None:
            raise SettingError(
                f"{bundle.path}: no ONNX export of this bundle; run `lablens export {bundle.path} --format onnx`"
            )
        on_cpu = resolve_device(device).type == "cpu"
        if backend == "auto" and on_cpu and onnx_model is None:
            onnx_model = cached_onnx(bundle)  # made by the explicit cache step (onnx_export.prepare_onnx)
        use_onnx = backend == "onnx" or (backend == "auto" and onnx_model is not None and on_cpu)
        policy = estimator_policy(bundle.estimator)
        self._onnx = (
            OnnxRunner(onnx_model, batch_size, threads=threads, policy=policy)
            if use_onnx and onnx_model is not None
            else None
        )
        self.backend = "onnx" if self._onnx is not None else "torch"
        self.policy = self._onnx.policy if self._onnx is not None else policy

    @classmethod
    def prepared(cls, bundle: Bundle, report: Callable[[str], None], **kwargs: Any) -> Predictor:
        """A predictor after the explicit ONNX cache step (:func:`~lablens.infer.onnx_export.prepare_onnx`, on
        a CPU with ``backend="auto"``); why an export could not be made goes to ``report``."""
        from lablens.device import resolve_device
        from lablens.infer.onnx_export import prepare_onnx

        if (
            kwargs.get("backend", "auto") == "auto"
            and resolve_device(kwargs.get("device", "auto")).type == "cpu"
        ):
            _, note = prepare_onnx(bundle)
            if note:
                report(note)
        return cls(bundle, **kwargs)

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
        return apply_temperature(self.logits(images), self.bundle.temperature)

    def gated_scores(self, images: np.ndarray, gate_crops: np.ndarray | None = None) -> Scores:
        """Probabilities, views, quality (of ``gate_crops``: the same images at the gate's size) and OOD scores
        of ``images`` (at the bundle's size), with each row's status."""
        logits, views = self.logits_and_views(images)
        proba = apply_temperature(logits, self.bundle.temperature)
        status = np.full(len(images), CLASSIFIED, dtype=object)
        ood = None
        if self.ood is not None:
            ood = self.ood.scores(np.asarray(images, dtype=np.uint8))
            status[self.ood.flags(ood)] = OUT_OF_DISTRIBUTION
        quality = None
        if self.gate is not None and gate_crops is not None:
            quality = self.gate.score_crops(gate_crops)
            status[~self.gate.evaluable(quality)] = NOT_EVALUABLE  # the gate wins: a blurred image is odd too
        return Scores(proba, views, quality, ood, status)

    def check(self, scores: Scores) -> SubmissionCheck | None:
        """The OOD verdict on a whole submission (None without a guard): its images' statistics, and the
        confidence of those given a class."""
        if self.ood is None:
            return None
        ood = scores.ood if scores.ood is not None else np.zeros(0)  # no image was readable
        return self.ood.check(ood, top_probabilities(scores.proba, scores.status))

    def predict_files(
        self,
        inputs: Iterable[str | Path],
        progress: Any = None,
        limits: DecodeLimits | None = None,
        workers: int = 2,
        on_images: Callable[[np.ndarray, list[str]], None] | None = None,
    ) -> PredictionResult:
        """Classify every readable image of ``inputs`` (files and folders) in memory: for small jobs; an archive
        streams to Parquet shards instead (:mod:`lablens.workflows.predict_archive`). ``on_images`` sees each
        decoded batch (at the bundle's size, rows in the order of ``paths``) and the sha256 of each file, e.g. to
        embed it too."""
        from lablens.infer.decode import Preprocessing, Shard, decode_shard

        progress = progress or SilentProgress()
        files, skipped = expand_inputs(inputs)
        result = PredictionResult(self.bundle.hash, self.bundle.classes, skipped=skipped)
        prep = Preprocessing.for_bundle(self.bundle, self.gate, limits)
        task = progress.task("predict", len(files))
        parts: list[Scores] = []
        for start in range(0, len(files), self.batch_size):
            chunk = [str(f) for f in files[start : start + self.batch_size]]
            decoded = decode_shard(Shard(0, start, chunk), prep, workers)
            for path, err in zip(chunk, decoded.errors, strict=True):
                if err is not None:
                    result.skipped.append(Problem(safe_display_name(path), *err))
            if len(decoded.ok):
                parts.append(self.gated_scores(decoded.images, decoded.gate_crops))
                if on_images is not None:
                    on_images(decoded.images, [str(decoded.sha256[i]) for i in decoded.ok])
            result.paths.extend(chunk[i] for i in decoded.ok)
            task.advance(len(chunk))
        task.done()
        scores = Scores.concat(parts, len(self.bundle.classes))
        result.proba, result.status = scores.proba, scores.status
        if self.gate is not None:
            result.quality = scores.quality if scores.quality is not None else np.zeros(0)
            result.max_level = self.gate.max_level
        if self.ood is not None:
            result.ood = scores.ood if scores.ood is not None else np.zeros(0)
            result.ood_guard = self.ood.describe()
            result.ood_check = self.check(scores)
        return result


def write_predictions(result: PredictionResult, out: str | Path, top_k: int, bundle: Bundle) -> Path:
    """CSV (one row per image: ``path, class_1, prob_1, … , bundle_hash``) or JSON by the suffix.

    With a quality gate or an OOD guard, rows also carry ``status`` (``classified`` | ``not_evaluable`` |
    ``out_of_distribution``; only a classified row has classes), ``quality_score`` (expected blur level, with a
    gate) and ``ood_score`` (squared Mahalanobis distance of the image statistics, with a guard).
    """
    out = Path(out)
    ranked = result.ranked(top_k)
    k = min(top_k, len(result.classes))
    gated, guarded = result.quality is not None, result.ood is not None
    status = list(result.status) if result.status is not None else [CLASSIFIED] * len(result.paths)

    def extra(i: int) -> dict[str, Any]:
        cols: dict[str, Any] = {"status": status[i]} if gated or guarded else {}
        if gated:
            cols["quality_score"] = round(float(result.quality[i]), 4)  # type: ignore[index]
        if guarded:
            cols["ood_score"] = round(float(result.ood[i]), 4)  # type: ignore[index]
        return cols

    if out.suffix.lower() == ".json":
        rows = []
        for i, (p, r) in enumerate(zip(result.paths, ranked, strict=True)):
            row: dict[str, Any] = {"path": p, **extra(i)}
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
            "out_of_distribution": ood_summary(result) if guarded else None,
            "predictions": rows,
            "skipped": [{"path": s.path, "kind": s.kind, "reason": s.reason} for s in result.skipped],
        }
        jsonio.write_json(out, doc)
        return out
    if result.skipped:  # CSV rows cannot hold them: list skipped inputs beside the predictions
        with out.with_name(out.stem + ".skipped.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "kind", "reason"])
            w.writerows([s.path, s.kind, s.reason] for s in result.skipped)
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        header = ["path", *(["status"] if gated or guarded else [])]
        header += (["quality_score"] if gated else []) + (["ood_score"] if guarded else [])
        for i in range(1, k + 1):
            header += [f"class_{i}", f"prob_{i}"]
        w.writerow([*header, "bundle_hash"])
        for i, (p, r) in enumerate(zip(result.paths, ranked, strict=True)):
            cells: list[Any] = [p, *(f"{v:.4f}" if isinstance(v, float) else v for v in extra(i).values())]
            for c, pr in r:
                cells += [c, f"{pr:.6f}"]
            cells += [""] * (2 * (k - len(r)))
            w.writerow([*cells, result.bundle_hash])
    return out


def ood_summary(result: PredictionResult) -> dict[str, Any]:
    """The guard's settings, the images it flagged and its verdict on the submission (reports, JSON)."""
    return {
        **(result.ood_guard or {}),
        "flagged": result.n_out_of_distribution,
        "submission": result.ood_check.as_dict() if result.ood_check is not None else None,
    }
