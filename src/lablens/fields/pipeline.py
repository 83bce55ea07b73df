"""One field pipeline: a field, a bundle and a preset in; detections, cell crops, quality gate, OOD results and
quality flags out.

``lablens analyze`` (on one machine and on Ray) and the review service call the same three steps, so the same
field gives the same cells — boxes, crops (to the byte: :func:`~lablens.data.io.png_sha256`), calls, gate and
OOD status, flags — wherever it is analysed:

1. :func:`field_spec` decides once per run how every field is read for a bundle: the preset the bundle's crops
   call for (whole cells for a cytoplasmic-ANA bundle, :func:`~lablens.fields.cell_crops.preset_for_bundle`), a
   learned detector when given, and the crop side the bundle was trained with (its recorded
   :class:`~lablens.fields.cell_crops.CropGeometry`; a crop side given by hand is checked against it).
2. :func:`detect_image` (:func:`detect_field` reads the file first) finds the field's objects and crops those to
   classify at the bundle's size (a whole-frame task: the frame itself).
3. :func:`classify_field` scores the crops with a :class:`~lablens.infer.predictor.Predictor`: probabilities,
   the quality gate (the field as a whole and each cell), the OOD guard and the quality flags relative to the
   bundle's training images (:mod:`lablens.quality.reference`).

:func:`sample_verdict` judges a sample from all of its fields' scores with the bundle's OOD guard.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lablens.data.io import DecodeLimits, ImageError, png_sha256, read_image
from lablens.data.preprocess import to_square
from lablens.data.validate import Problem
from lablens.errors import SettingError
from lablens.fields.cell_crops import (
    CropGeometry,
    field_cells,
    geometry_mismatch,
    preset_for_bundle,
    preset_geometry,
)
from lablens.fields.detection import Detection
from lablens.fields.intensity import field_intensity
from lablens.fields.presets import FieldPreset
from lablens.infer.ood import OUT_OF_DISTRIBUTION, OodGuard, SubmissionCheck
from lablens.infer.predictor import CLASSIFIED, NOT_EVALUABLE, Predictor, Scores, top_probabilities
from lablens.quality.reference import Flag, ImageReference


class FieldSetupError(SettingError):
    """The fields cannot be analysed with this bundle as asked; the message names the setting and why."""


@dataclass
class FieldInput:
    """A field to analyse: its file (or, in the service, its name), its sample and its scale when known."""

    path: Path
    sample: str
    um_per_px: float | None


@dataclass(frozen=True)
class FieldSpec:
    """How every field of a run is analysed (plain data: it travels to Ray workers)."""

    preset: FieldPreset
    um_per_px: float | None
    detector_kwargs: dict[str, Any]
    size: int
    resize_mode: str
    crop_um: float | None = None
    bags: bool = False


def _learned_preset(preset: FieldPreset, detector: Path) -> FieldPreset:
    """``preset`` with its detector replaced by a learned one (``lablens train-detector``), whose objects are
    the ones classified."""
    from lablens.fields.learned import detector_card
    from lablens.infer.bundle import BundleError

    if preset.detector is None:
        raise FieldSetupError(
            f"--detector: task {preset.name!r} classifies whole frames; there is nothing to detect"
        )
    try:
        card = detector_card(detector)
    except BundleError as exc:
        raise FieldSetupError(f"--detector {exc}") from None
    return replace(
        preset,
        detector="learned",
        classify=(str(card["objects"]),),
        detector_kwargs={"bundle": str(detector)},
    )


def _check_crops(
    trained: CropGeometry | None,
    preset: FieldPreset,
    image_size: int,
    crop_um: float | None,
    allow: bool,
    name: str,
) -> list[str]:
    """Compare the bundle's training crops with the analysis crops: refuse or warn (naming both)."""
    if preset.detector is None:
        return []
    found = geometry_mismatch(trained, preset_geometry(preset, image_size, crop_um))
    if found is None:
        return []
    level, message = found
    if level == "refuse" and not allow:
        raise FieldSetupError(
            f"{name}: {message}; give --crop-um to crop as the bundle was trained, or --allow-crop-mismatch "
            "to analyse anyway"
        )
    return [message]


def field_spec(
    bundle: Any,
    preset: FieldPreset,
    *,
    um_per_px: float | None = None,
    crop_um: float | None = None,
    detector: str | Path | None = None,
    detector_kwargs: dict[str, Any] | None = None,
    allow_crop_mismatch: bool = False,
) -> tuple[FieldSpec, list[str], list[str]]:
    """How ``bundle`` reads fields of ``preset``'s kind: (spec, notes on choices made, warnings).

    Without ``crop_um`` cells are cropped at the side the bundle's training crops had (when it records one for
    the same objects), else at the preset's."""
    trained = CropGeometry.from_dict(bundle.crop) if bundle.crop else None
    preset, chosen = preset_for_bundle(preset, trained, bundle.classes)
    notes = [chosen] if chosen else []
    if detector is not None:
        preset = _learned_preset(preset, Path(detector))
        notes.append(f"objects found by the learned detector {detector}")
    if (
        crop_um is None
        and trained is not None
        and preset.detector is not None
        and trained.object in ("", "+".join(preset.classify))
        and trained.side_um != preset.crop_um
    ):
        crop_um = trained.side_um
        notes.append(f"cells cropped as the bundle was trained: {trained.describe()}")
    warnings = _check_crops(
        trained, preset, bundle.image_size, crop_um, allow_crop_mismatch, str(bundle.path)
    )
    kwargs = {**preset.detector_kwargs, **(detector_kwargs or {})}
    bags = bundle.inputs == "bags"
    return (
        FieldSpec(preset, um_per_px, kwargs, bundle.image_size, bundle.resize_mode, crop_um, bags),
        notes,
        warnings,
    )


@dataclass
class FieldWork:
    """One field on its way through the pipeline: decoded and detected, then classified, then finished."""

    k: int
    item: FieldInput
    error: Problem | None = None
    img: np.ndarray | None = None
    dets: list[Detection] = field(default_factory=list)
    todo: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # objects classified
    crops: np.ndarray | None = None  # of ``todo``, at the bundle's size
    row: dict[str, Any] = field(default_factory=dict)  # the field's line in fields.csv
    tile_px: float | None = None  # side of a cell crop in field pixels (None: the whole frame is the unit)
    crop_sha256: list[str] = field(
        default_factory=list
    )  # of ``todo``: the PNG digest the service stores under
    proba: np.ndarray | None = None  # per object (NaN rows for objects not classified or given no class)
    scores: Scores | None = (
        None  # of ``todo``, statuses final (a field not evaluable holds back all its cells)
    )
    flags: list[list[Flag]] = field(default_factory=list)  # of ``todo``
    cell_scores: dict[str, np.ndarray] = field(default_factory=dict)  # status, quality, ood per object
    cell_rows: list[dict[str, Any]] = field(default_factory=list)
    overlay: dict[str, str] | None = None


def detect_field(k: int, item: FieldInput, spec: FieldSpec) -> FieldWork:
    """Read field ``k`` and :func:`detect_image` it (an unreadable file: the work carries the problem)."""
    try:
        img = read_image(item.path, DecodeLimits()).pixels
    except ImageError as exc:
        return FieldWork(k, item, Problem(str(item.path), exc.kind, exc.reason))
    return detect_image(k, item, img, spec)


def detect_image(k: int, item: FieldInput, img: np.ndarray, spec: FieldSpec) -> FieldWork:
    """Find the field's objects and crop those to classify (a whole-frame task: the frame itself)."""
    preset = spec.preset
    scale = item.um_per_px or spec.um_per_px or preset.um_per_px
    if preset.detector is None:  # the whole frame is the unit
        h, w = img.shape[:2]
        dets = [Detection("image", (0, 0, w, h), area=h * w)]
        todo = np.zeros(1, dtype=np.int64)
        crops = to_square(img, spec.size, spec.resize_mode)[None]
        tile_px = None
    else:
        dets, todo, crops = field_cells(img, preset, scale, spec.detector_kwargs, spec.size, spec.crop_um)
        tile_px = float(spec.crop_um or preset.crop_um) / float(scale)
    row: dict[str, Any] = {
        "sample": item.sample,
        "field": str(item.path),
        "width": img.shape[1],
        "height": img.shape[0],
        "um_per_px": scale,
    }
    for d in dets:
        row[f"n_{d.label}"] = row.get(f"n_{d.label}", 0) + 1
    if preset.aggregator == "ana":
        row["intensity"] = field_intensity(img, [d for d in dets if d.label in preset.classify])
    digests = [png_sha256(c) for c in crops]
    return FieldWork(k, item, None, img, dets, todo, crops, row, tile_px=tile_px, crop_sha256=digests)


def classify_field(
    work: FieldWork, predictor: Predictor, reference: ImageReference | None = None
) -> FieldWork:
    """Class probabilities of the field's objects to classify (NaN rows for the rest and for those given no
    class), with each object's status, quality score (with a gate), OOD score (with a guard) and quality flags
    (with the bundle's image ``reference``).

    With a gate the field itself is scored too (:meth:`~lablens.infer.gate.QualityGate.score_field`; a
    whole-frame task: the frame's score): a field above the gate's level is not evaluable as a whole, and all
    of its cells are marked so, not only the blurred ones."""
    n, k = len(work.dets), len(predictor.bundle.classes)
    work.proba = np.full((n, k), np.nan)
    status = np.full(n, "", dtype=object)
    quality, ood = np.full(n, np.nan), np.full(n, np.nan)
    gate = predictor.gate
    field_ok = True
    if gate is not None and work.tile_px is not None and work.img is not None:
        field_score = gate.score_field(work.img, work.tile_px)
        field_ok = bool(gate.evaluable(field_score))
        work.row.update(quality_score=round(field_score, 4), evaluable=field_ok)
    if len(work.todo):
        assert work.crops is not None
        gate_crops = gate.resize(work.crops) if gate is not None else None
        scores = predictor.gated_scores(work.crops, gate_crops)
        if scores.quality is not None:
            quality[work.todo] = scores.quality
            if work.tile_px is None:  # the frame is the unit: its score is the field's
                field_ok = bool(gate.evaluable(scores.quality[0]))  # type: ignore[union-attr]
                work.row.update(quality_score=round(float(scores.quality[0]), 4), evaluable=field_ok)
        if not field_ok:
            scores.status[:] = NOT_EVALUABLE
        if scores.ood is not None:
            ood[work.todo] = scores.ood
        status[work.todo] = scores.status
        proba = scores.proba.copy()
        proba[scores.status != CLASSIFIED] = np.nan  # no class is given: they enter no call
        work.proba[work.todo] = proba
        work.scores = scores
        work.flags = reference.flags(work.crops) if reference is not None else [[] for _ in work.todo]
    work.row["n_not_evaluable"] = int((status == NOT_EVALUABLE).sum())
    work.row["n_out_of_distribution"] = int((status == OUT_OF_DISTRIBUTION).sum())
    work.cell_scores = {"status": status, "quality_score": quality, "ood_score": ood}
    work.crops = None
    return work


def sample_verdict(guard: OodGuard | None, scores: list[Scores]) -> SubmissionCheck | None:
    """The OOD guard's verdict on a sample from the scores of all of its fields (None without a guard): its
    images' statistics, and the confidence of those given a class."""
    parts = [s for s in scores if s is not None and s.ood is not None]
    if guard is None:
        return None
    if not parts:
        return guard.check(np.zeros(0), np.zeros(0))
    ood = np.concatenate([s.ood for s in parts])  # type: ignore[misc]
    top = np.concatenate([top_probabilities(s.proba, s.status) for s in parts])
    return guard.check(ood, top)
