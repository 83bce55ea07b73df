"""``lablens train-detector``: a field detector learned from the lab's annotated fields.

Fields (images, folders, or a fields CSV with ``sample`` and ``um_per_px``) and their boxes (a box CSV, a COCO
JSON or a folder of VOC files — read as ``lablens crop-cells`` reads them; the boxes' labels are not used, every
box is one object of kind ``--object``) train a :class:`~lablens.fields.learned.LearnedDetector`. The run folder
gets ``detector/`` (the bundle ``lablens analyze --detector`` takes), ``metrics.json`` (recall and precision at box
IoU ≥ 0.5 on the validation fields, held out by sample) and ``skipped.csv`` for fields that could not be used.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from pydantic import Field

from lablens.data.io import ImageError, read_image
from lablens.data.validate import Problem
from lablens.errors import RunError
from lablens.evaluate.detection import Counts, score_image
from lablens.fields.learned import LearnedDetector
from lablens.fields.presets import get_preset
from lablens.jsonio import write_json
from lablens.progress import console, make_progress
from lablens.train.context import FitContext
from lablens.verb_config import VerbConfig
from lablens.workflows.analyze import read_fields
from lablens.workflows.crop_cells import read_boxes
from lablens.workflows.run_folder import run_folder

BUNDLE = "detector"
#: box IoU at which a detection matches an annotated object
MATCH_IOU = 0.5


@dataclass
class DetectorRun:
    out: Path
    bundle: Path
    metrics: dict[str, Any]
    skipped: list[Problem] = field(default_factory=list)


#: the detector family's own defaults (one source: its ``__init__``)
_DETECTOR = {n: p.default for n, p in inspect.signature(LearnedDetector.__init__).parameters.items()}
#: the settings that are the detector's hyper-parameters
DETECTOR_PARAMS = ("label", "model_name", "weights", "epochs", "batch_size", "lr", "tile", "work_um_per_px",
                   "threshold", "validation_fraction", "seed")  # fmt: skip


class TrainDetectorConfig(VerbConfig):
    """The field preset and scale of the annotated fields, the device, and the detector's hyper-parameters
    (:class:`~lablens.fields.learned.LearnedDetector`); written as ``train_detector.yaml`` into the run."""

    verb: ClassVar[str] = "train-detector"

    task: str = "ana"
    um_per_px: float | None = None
    device: str = "auto"
    label: str = _DETECTOR["label"]
    model_name: str = _DETECTOR["model_name"]
    weights: str = _DETECTOR["weights"]
    epochs: int = Field(_DETECTOR["epochs"], ge=1)
    batch_size: int = Field(_DETECTOR["batch_size"], ge=2)
    lr: float = _DETECTOR["lr"]
    tile: int = _DETECTOR["tile"]
    work_um_per_px: float = _DETECTOR["work_um_per_px"]
    threshold: float = _DETECTOR["threshold"]
    validation_fraction: float = _DETECTOR["validation_fraction"]
    seed: int = _DETECTOR["seed"]

    def detector_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in DETECTOR_PARAMS}


def train_detector(
    fields: list[str | Path],
    annotations: str | Path,
    out: str | Path,
    cfg: TrainDetectorConfig | None = None,
    *,
    progress: bool = True,
    **settings: Any,
) -> DetectorRun:
    """Train and save a learned detector (see the module docstring) with ``cfg`` (or its settings as keywords)."""
    cfg = TrainDetectorConfig.resolve(cfg, settings)
    task, um_per_px, params, device = cfg.task, cfg.um_per_px, cfg.detector_params(), cfg.device
    preset = get_preset(task)
    annotations = Path(annotations)
    if not annotations.exists():
        raise RunError(f"--annotations {annotations}: no such file or folder")
    try:
        boxes, by = read_boxes(annotations, None, labelled=False)
        detector = LearnedDetector(**params)
    except (ValueError, TypeError) as exc:
        raise RunError(str(exc)) from None
    items, skipped = read_fields(list(fields), "per-field", None)
    images, truth, scales, groups = [], [], [], []
    for item in items:
        key = item.path.stem if by == "stem" else str(item.path.resolve())
        if key not in boxes:
            skipped.append(Problem(str(item.path), "no_annotation", f"no boxes for it in {annotations.name}"))
            continue
        scale = item.um_per_px or um_per_px or preset.um_per_px
        if not scale:
            skipped.append(
                Problem(str(item.path), "no_scale", "no um_per_px for this field (give --um-per-px)")
            )
            continue
        try:
            images.append(read_image(item.path).pixels)
        except ImageError as exc:
            skipped.append(Problem(str(item.path), exc.kind, exc.reason))
            continue
        truth.append([b for _, b in boxes[key]])
        scales.append(float(scale))
        groups.append(item.sample)
    if not images:
        raise RunError("no annotated field could be used: check the paths in the annotations")
    with run_folder(out) as out, make_progress(progress) as prog:
        detector.fit(
            images, truth, um_per_px=scales, groups=groups, context=FitContext(progress=prog, device=device)
        )
        metrics = _validation_metrics(detector, images, truth, scales)
        digest = detector.save(out / BUNDLE, metrics)
        metrics["bundle_hash"] = digest
        write_json(out / "metrics.json", metrics)
        cfg.write(out / "train_detector.yaml")
        if skipped:
            pd.DataFrame([s.__dict__ for s in skipped]).to_csv(out / "skipped.csv", index=False)
    if progress:
        for s in skipped:
            console.print(f"  [yellow]skipped[/yellow] {s.path}: {s.reason}", highlight=False)
        val = metrics.get("validation")
        figures = (
            f"validation recall {val['recall']:.3f}, precision {val['precision']:.3f} on {val['fields']} fields"
            if val
            else "no validation fields (fewer than 5 samples): nothing to score it on"
        )
        console.print(f"detector → {out / BUNDLE}: {figures}", highlight=False)
    return DetectorRun(out, out / BUNDLE, metrics, skipped)


def _validation_metrics(
    detector: LearnedDetector, images: list, truth: list, scales: list[float]
) -> dict[str, Any]:
    rows = detector.validation_rows_
    doc: dict[str, Any] = {"training": {k: v for k, v in detector.training_.items() if k != "history"}}
    if not rows:
        return doc
    counts: dict[str, Counts] = {}
    for i in rows:
        found = detector.set_params(um_per_px=scales[i]).detect(images[i])
        score_image(
            [("object", d.box, d.score) for d in found], [("object", b) for b in truth[i]], ["object"], MATCH_IOU,
            counts,
        )  # fmt: skip
    c = counts["object"]
    doc["validation"] = {
        "fields": len(rows),
        "objects": c.tp + c.fn,
        "recall": c.recall,
        "precision": c.precision,
        "iou": MATCH_IOU,
    }
    return doc
