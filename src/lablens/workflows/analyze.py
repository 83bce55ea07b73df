"""``lablens analyze``: whole fields → detected cells → per-cell classes → a sample-level report.

For each field: detect (the task preset's detector at the field's scale), crop the cells to classify at one
physical size, classify them with any lablens bundle, draw an overlay. Then per sample (all fields together,
one per field, or a ``sample`` column of a fields CSV) aggregate by the preset's rule: a white-cell
differential, an ANA serum report, or a patient verdict over frames.

Writes into ``out`` (a new folder): ``cells.csv`` (one row per detected object), ``fields.csv``,
``samples.json``, ``overlays/``, ``report.html``, ``analyze.json`` (the resolved settings) and, when inputs were
unreadable, ``skipped.csv`` (file and reason). Inputs are only read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from lablens import __version__
from lablens.data.io import DecodeLimits, ImageError, read_image
from lablens.data.preprocess import to_square
from lablens.data.tables import TableError, number, read_text_csv
from lablens.data.validate import Problem
from lablens.fields import aggregate
from lablens.fields.cell_crops import (
    CropGeometry,
    field_cells,
    geometry_mismatch,
    preset_for_bundle,
    preset_geometry,
)
from lablens.fields.crops import draw_overlay
from lablens.fields.detection import Detection
from lablens.fields.icap import icap_code
from lablens.fields.intensity import IntensityScale, field_intensity, sample_intensity
from lablens.fields.presets import FieldPreset, get_preset
from lablens.infer.bag_call import METHOD as BAG_METHOD
from lablens.infer.bag_call import BagCall, call_bags
from lablens.infer.bundle import BundleError, load_bundle
from lablens.infer.ood import DEFAULT_ALPHA, OUT_OF_DISTRIBUTION, OodGuard
from lablens.infer.predictor import CLASSIFIED, NOT_EVALUABLE, Predictor, expand_inputs
from lablens.infer.shard import ModelSpec
from lablens.progress import console, make_progress
from lablens.quality.gate import QualityGate
from lablens.report.html import thumbnail_b64
from lablens.workflows.common import RunError, write_json
from lablens.workflows.run_folder import check_new_folder, run_folder

SAMPLE_MODES = ("together", "per-field")
ENGINES = ("local", "ray")
SHOWN_STATUS = {NOT_EVALUABLE: "not evaluable", OUT_OF_DISTRIBUTION: "out of distribution"}  # overlay labels


@dataclass
class FieldInput:
    path: Path
    sample: str
    um_per_px: float | None


@dataclass
class AnalyzeResult:
    out: Path
    samples: dict[str, dict[str, Any]]
    cells: pd.DataFrame
    skipped: list[Problem] = field(default_factory=list)


def read_fields(
    inputs: list[str | Path], samples: str, sample_id: str | None
) -> tuple[list[FieldInput], list[Problem]]:
    """Field files from paths/folders, or from one CSV (``path`` [, ``sample``] [, ``um_per_px``])."""
    if samples not in SAMPLE_MODES:
        raise RunError(f"--samples must be one of {', '.join(SAMPLE_MODES)}")
    if len(inputs) == 1 and str(inputs[0]).lower().endswith(".csv"):
        csv = Path(inputs[0])
        if not csv.is_file():
            raise RunError(f"{csv}: no such file")
        try:
            df = read_text_csv(csv)
        except TableError as exc:
            raise RunError(str(exc)) from None
        if "path" not in df.columns:
            raise RunError(
                f"{csv}: a fields CSV needs a 'path' column (and optionally 'sample', 'um_per_px')"
            )
        out: list[FieldInput] = []
        problems: list[Problem] = []
        for row in df.to_dict("records"):
            p = Path(str(row["path"]))
            p = p if p.is_absolute() else csv.parent / p
            if not p.is_file():
                problems.append(Problem(str(p), "missing_file", "listed in the CSV but not found"))
                continue
            try:
                scale = number(row.get("um_per_px", ""), "um_per_px", f"{csv}, {p.name}")
            except TableError as exc:
                raise RunError(str(exc)) from None
            sample = row["sample"] if "sample" in df.columns else _sample_name(p, samples, sample_id)
            out.append(FieldInput(p, sample, scale))
        return out, problems
    files, problems = expand_inputs(inputs)
    return [FieldInput(f, _sample_name(f, samples, sample_id), None) for f in sorted(files)], problems


def _sample_name(path: Path, samples: str, sample_id: str | None) -> str:
    return path.stem if samples == "per-field" else (sample_id or "sample")


def _learned_preset(preset: FieldPreset, detector: Path) -> FieldPreset:
    """``preset`` with its detector replaced by a learned one (``lablens train-detector``), whose objects are
    the ones classified."""
    from lablens.fields.learned import detector_card

    if preset.detector is None:
        raise RunError(
            f"--detector: task {preset.name!r} classifies whole frames; there is nothing to detect"
        )
    try:
        card = detector_card(detector)
    except BundleError as exc:
        raise RunError(f"--detector {exc}") from None
    return replace(
        preset,
        detector="learned",
        classify=(str(card["objects"]),),
        detector_kwargs={"bundle": str(detector)},
    )


def analyze(
    bundle: str | Path,
    fields: list[str | Path],
    out: str | Path,
    *,
    task: str = "blood",
    um_per_px: float | None = None,
    samples: str = "together",
    sample_id: str | None = None,
    min_confidence: float = 0.5,
    min_cells: int = 100,
    ignore_regions: list[tuple[int, int, int, int]] | None = None,
    detector_kwargs: dict[str, Any] | None = None,
    detector: str | Path | None = None,
    verifier: str | Path | None = None,
    crop_um: float | None = None,
    allow_crop_mismatch: bool = False,
    controls: str | Path | None = None,
    batch_size: int = 64,
    device: str = "auto",
    quality: str | Path | None = None,
    max_level: float = 2.5,
    ood_alpha: float | None = DEFAULT_ALPHA,
    engine: str = "local",
    ray: Any = None,
    progress: bool = True,
) -> AnalyzeResult:
    """Analyse whole fields with a bundle; see the module docstring for what is written.

    ``quality`` (a blur-level bundle; a multitask bundle's own quality head without it) scores every cell: a
    cell above ``max_level`` is not evaluable, and so is every cell of a field whose median cell score is above
    it. The bundle's out-of-distribution guard (``ood_alpha``; None: off) flags cells unlike its training
    images and judges each sample. Neither kind of cell enters a differential or pattern call; both are counted.

    ``engine="ray"`` reads and detects fields in Ray tasks and classifies their cells in model actors
    (:mod:`lablens.workflows.analyze_ray`; ``ray``: :class:`~lablens.infer.ray_engine.RaySettings`); the
    results are the local engine's."""
    preset = get_preset(task)
    check_new_folder(Path(out))
    if verifier is not None and preset.detector != "smear":
        raise RunError(f"--verifier is for blood smear fields; task {task!r} does not use the smear detector")
    b = load_bundle(bundle)
    bags = b.inputs == "bags"
    if bags and preset.detector is None:
        raise RunError(f"{bundle} calls a sample from its cells; task {task!r} has no cells to find")
    if bags and quality is not None:
        raise RunError(f"--quality gates cell classifiers; {bundle} calls a sample from all of its cells")
    try:
        gate = QualityGate.for_bundle(b, quality, max_level) if not bags else None
        guard = OodGuard.for_bundle(b, ood_alpha)
    except (BundleError, ValueError) as exc:
        raise RunError(str(exc)) from None
    preset, chosen = preset_for_bundle(preset, CropGeometry.from_dict(b.crop) if b.crop else None, b.classes)
    notes = [chosen] if chosen else []
    if detector is not None:
        preset = _learned_preset(preset, Path(detector))
        notes.append(f"objects found by the learned detector {detector}")
    warnings = _check_crops(b, preset, crop_um, allow_crop_mismatch, str(bundle))
    if controls is not None and preset.aggregator != "ana":
        raise RunError(f"--controls grade fluorescence intensity; task {task!r} is not an IIF task")
    items, skipped = read_fields(list(fields), samples, sample_id)
    if not items and not skipped:
        raise RunError("no image files found in the given paths")
    kwargs = dict(preset.detector_kwargs)
    kwargs.update(detector_kwargs or {})
    if verifier is not None:
        from lablens.fields.verifier import load_verifier

        try:
            load_verifier(verifier)  # fail now, naming the file, rather than on the first field
        except (FileNotFoundError, ValueError) as exc:
            raise RunError(str(exc)) from None
        kwargs["verifier"] = str(verifier)
    if ignore_regions:
        kwargs["ignore_regions"] = [tuple(int(v) for v in r) for r in ignore_regions]
    if engine not in ENGINES:
        raise RunError(f"--engine {engine!r}: use local or ray")
    if engine == "ray" and bags:
        raise RunError(
            f"{bundle} calls a sample from all of its cells at once; --engine ray analyses fields one by one "
            "and takes cell classifiers only (use --engine local)"
        )
    spec = FieldSpec(preset, um_per_px, kwargs, b.image_size, b.resize_mode, crop_um, bags)
    cell_rows: list[dict[str, Any]] = []
    field_rows: list[dict[str, Any]] = []
    overlays: dict[str, list[dict[str, str]]] = {}
    pending: list[_Pending] = []  # bag bundles: fields wait until their sample's cells are all found
    grading = _intensity_scale(controls, preset, um_per_px, kwargs) if controls is not None else None
    with run_folder(out) as out, make_progress(progress) as prog:
        (out / "overlays").mkdir()
        bar = prog.task("analyze fields", len(items))
        done: dict[int, FieldWork] = {}

        def finish(work: FieldWork) -> None:
            """Overlay and cell rows of a classified field (kept by index: rows come out in input order)."""
            if work.error is None and not bags:
                rows: list[dict[str, Any]] = []
                shown: dict[str, list[dict[str, str]]] = {}
                _finish_field(
                    out,
                    work.k,
                    work.item,
                    work.img,
                    work.dets,
                    work.proba,
                    b.classes,
                    min_confidence,
                    shown,
                    rows,
                    cell_scores=work.cell_scores,
                )
                work.cell_rows, work.overlay = rows, shown[work.item.sample][0]
            work.img = None  # the pixels are not kept beyond their field
            done[work.k] = work
            bar.advance(1)

        if engine == "ray":
            from lablens.workflows.analyze_ray import analyze_on_ray

            model = ModelSpec(
                str(bundle),
                quality=str(quality) if quality is not None else None,
                max_level=max_level,
                batch_size=batch_size,
                device=device,
                ood_alpha=ood_alpha,
            )
            analyze_on_ray(list(enumerate(items)), spec, model, ray, on_field=finish)
        else:
            predictor = Predictor(b, batch_size=batch_size, device=device, gate=gate, ood_alpha=ood_alpha)
            for k, item in enumerate(items):
                work = detect_field(k, item, spec)
                if work.error is None and bags:
                    pending.append(_Pending(k, item, work.dets, work.todo, work.crops))
                elif work.error is None:
                    classify_field(work, predictor)
                finish(work)
        bar.done()
        for k in sorted(done):
            work = done[k]
            if work.error is not None:
                skipped.append(work.error)
                continue
            field_rows.append(work.row)
            cell_rows.extend(work.cell_rows)
            if work.overlay is not None:
                overlays.setdefault(work.item.sample, []).append(work.overlay)
        calls = _call_samples(b, pending, device) if bags else {}
        for f in pending:
            img = read_image(f.item.path, DecodeLimits()).pixels
            proba = np.full((len(f.dets), len(b.classes)), np.nan)
            proba[f.todo] = calls[f.item.sample].cells[f.offset : f.offset + len(f.todo)]
            attention = np.full(len(f.dets), np.nan)
            attention[f.todo] = calls[f.item.sample].attention[f.offset : f.offset + len(f.todo)]
            _finish_field(
                out,
                f.k,
                f.item,
                img,
                f.dets,
                proba,
                b.classes,
                min_confidence,
                overlays,
                cell_rows,
                attention,
            )
        cells = pd.DataFrame(cell_rows)
        docs = _aggregate(cells, preset, b.classes, min_confidence, min_cells)
        _screening(docs, cells, field_rows, guard)
        for sample, call in calls.items():
            if sample in docs:
                doc = docs[sample]
                doc.update(_bag_doc(call, b.classes, cells[cells["sample"] == sample], doc["cell_share"]))
        if preset.aggregator == "ana":
            for sample, doc in docs.items():
                _grade_sample(doc, [r["intensity"] for r in field_rows if r["sample"] == sample], grading)
        for s, doc in docs.items():
            doc["n_fields"] = sum(r["sample"] == s for r in field_rows)
        cells.to_csv(out / "cells.csv", index=False)
        pd.DataFrame(field_rows).to_csv(out / "fields.csv", index=False)
        write_json(out / "samples.json", docs)
        settings = {
            "lablens_version": __version__,
            "bundle": str(bundle),
            "bundle_hash": b.hash,
            "classes": b.classes,
            "task": preset.name,
            "detector": preset.detector,
            "detector_kwargs": kwargs,
            "um_per_px": um_per_px or preset.um_per_px,
            "crop_um": crop_um or preset.crop_um,
            "bundle_crop": b.crop,
            "bundle_inputs": b.inputs,
            "warnings": warnings,
            "notes": notes,
            "intensity_controls": None if grading is None else {"file": str(controls), **grading.to_dict()},
            "samples": samples,
            "min_confidence": min_confidence,
            "min_cells": min_cells,
            "quality_gate": None
            if gate is None
            else {"bundle_hash": gate.bundle.hash, "max_level": max_level, "own_head": gate.head},
            "ood": guard.describe() if guard is not None else None,
            "n_fields": len(field_rows),
            "n_skipped": len(skipped),
        }
        write_json(out / "analyze.json", settings)
        if skipped:
            pd.DataFrame([s.__dict__ for s in skipped]).to_csv(out / "skipped.csv", index=False)
        (out / "report.html").write_text(_render(docs, overlays, settings, preset), encoding="utf-8")
    for w in warnings:  # shown even when quiet: the calls may not mean what the bundle learnt
        console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    if progress:
        for n in notes:
            console.print(f"  {n}", highlight=False)
        for s in skipped:
            console.print(
                f"  [yellow]skipped[/yellow] {s.path}: {s.reason} [dim]({s.kind})[/dim]", highlight=False
            )
        console.print(
            f"{len(field_rows)} fields, {len(cells)} objects, {len(docs)} sample(s), {len(skipped)} skipped → {out}"
        )
    return AnalyzeResult(out, docs, cells, skipped)


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


@dataclass
class FieldWork:
    """One field on its way through the analysis: decoded and detected, then classified, then finished."""

    k: int
    item: FieldInput
    error: Problem | None = None
    img: np.ndarray | None = None
    dets: list[Detection] = field(default_factory=list)
    todo: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    crops: np.ndarray | None = None
    row: dict[str, Any] = field(default_factory=dict)
    proba: np.ndarray | None = None
    cell_scores: dict[str, np.ndarray] = field(default_factory=dict)  # status, quality, ood per object
    tile_px: float | None = None  # side of a cell crop in field pixels (None: the whole frame is the unit)
    cell_rows: list[dict[str, Any]] = field(default_factory=list)
    overlay: dict[str, str] | None = None


def detect_field(k: int, item: FieldInput, spec: FieldSpec) -> FieldWork:
    """Read field ``k``, find its objects and crop those to classify (a whole-frame task: the frame itself)."""
    try:
        img = read_image(item.path, DecodeLimits()).pixels
    except ImageError as exc:
        return FieldWork(k, item, Problem(str(item.path), exc.kind, exc.reason))
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
    row = _field_row(item, img, dets, scale)
    if preset.aggregator == "ana":
        row["intensity"] = field_intensity(img, [d for d in dets if d.label in preset.classify])
    return FieldWork(k, item, None, img, dets, todo, crops, row, tile_px=tile_px)


def classify_field(work: FieldWork, predictor: Predictor) -> FieldWork:
    """Class probabilities of the field's objects to classify (NaN rows for the rest and for those given no
    class), with each object's status, quality score (with a gate) and OOD score (with a guard).

    With a gate the field itself is scored too (:meth:`~lablens.quality.gate.QualityGate.score_field`; a
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
        gate_crops = gate.resize(work.crops) if gate is not None else None
        scores = predictor.gated_scores(work.crops, gate_crops)
        cell_status = scores.status.copy()
        if scores.quality is not None:
            quality[work.todo] = scores.quality
            if work.tile_px is None:  # the frame is the unit: its score is the field's
                field_ok = bool(gate.evaluable(scores.quality[0]))  # type: ignore[union-attr]
                work.row.update(quality_score=round(float(scores.quality[0]), 4), evaluable=field_ok)
        if not field_ok:
            cell_status[:] = NOT_EVALUABLE
        if scores.ood is not None:
            ood[work.todo] = scores.ood
        status[work.todo] = cell_status
        proba = scores.proba.copy()
        proba[cell_status != CLASSIFIED] = np.nan  # no class is given: they enter no call
        work.proba[work.todo] = proba
    work.row["n_not_evaluable"] = int((status == NOT_EVALUABLE).sum())
    work.row["n_out_of_distribution"] = int((status == OUT_OF_DISTRIBUTION).sum())
    work.cell_scores = {"status": status, "quality_score": quality, "ood_score": ood}
    work.crops = None
    return work


@dataclass
class _Pending:
    """A field analysed with a bag bundle, waiting for its sample's call: its cells start at ``offset``."""

    k: int
    item: FieldInput
    dets: list[Detection]
    todo: np.ndarray
    crops: np.ndarray
    offset: int = 0


def _check_crops(b: Any, preset: FieldPreset, crop_um: float | None, allow: bool, name: str) -> list[str]:
    """Compare the bundle's training crops with the analysis crops: refuse or warn (naming both)."""
    if preset.detector is None:
        return []
    trained = CropGeometry.from_dict(b.crop) if b.crop else None
    found = geometry_mismatch(trained, preset_geometry(preset, b.image_size, crop_um))
    if found is None:
        return []
    level, message = found
    if level == "refuse" and not allow:
        raise RunError(
            f"{name}: {message}; give --crop-um to crop as the bundle was trained, or --allow-crop-mismatch "
            "to analyse anyway"
        )
    return [message]


def _call_samples(b: Any, pending: list[_Pending], device: str) -> dict[str, BagCall]:
    """One multiple-instance call per sample over all of its cells (fields in order, cells in field order)."""
    by_sample: dict[str, list[_Pending]] = {}
    for f in pending:
        f.offset = sum(len(g.todo) for g in by_sample.get(f.item.sample, []))
        by_sample.setdefault(f.item.sample, []).append(f)
    names = [s for s, fs in by_sample.items() if sum(len(f.todo) for f in fs)]
    bags_ = [np.concatenate([f.crops for f in by_sample[s]]) for s in names]
    return dict(zip(names, call_bags(b, bags_, device), strict=True))


def _intensity_scale(
    controls: str | Path, preset: FieldPreset, um_per_px: float | None, kwargs: dict[str, Any]
) -> IntensityScale:
    """Grade thresholds from a controls CSV (``path, control`` = negative | positive [, ``um_per_px``])."""
    csv = Path(controls)
    try:
        df = read_text_csv(csv)
    except TableError as exc:
        raise RunError(str(exc)) from None
    if not {"path", "control"} <= set(df.columns):
        raise RunError(f"{csv}: a controls CSV needs columns path, control (negative or positive)")
    scores: dict[str, list[float]] = {"negative": [], "positive": []}
    for i, row in enumerate(df.to_dict("records")):
        kind = row["control"].strip().lower()
        if kind not in scores:
            raise RunError(f"{csv}, row {i + 2}: control {row['control']!r} is not negative or positive")
        path = Path(row["path"]) if Path(row["path"]).is_absolute() else csv.parent / row["path"]
        try:
            img = read_image(path, DecodeLimits()).pixels
            scale = number(row.get("um_per_px", ""), "um_per_px", f"{csv}, row {i + 2}") or um_per_px
        except (ImageError, TableError) as exc:
            raise RunError(
                f"{csv}, row {i + 2}: control field {path.name}: {getattr(exc, 'reason', exc)}"
            ) from None
        dets, _, _ = field_cells(img, preset, scale or preset.um_per_px, kwargs, 16)
        scores[kind].append(field_intensity(img, [d for d in dets if d.label in preset.classify]))
    try:
        return IntensityScale.from_controls(scores["negative"], scores["positive"])
    except ValueError as exc:
        raise RunError(f"{csv}: {exc}") from None


def _grade_sample(doc: dict[str, Any], scores: list[float], scale: IntensityScale | None) -> None:
    """Add the sample's intensity; a pattern called on a dim sample is flagged for the reader."""
    doc["intensity"] = sample_intensity(scores, scale)
    grade = doc["intensity"]["grade"]
    if grade in ("negative", "intermediate") and doc.get("result") == "positive":
        doc.setdefault("flags", []).append(
            f"{grade} fluorescence intensity (score {doc['intensity']['score']}): the pattern "
            f"{doc.get('dominant_pattern')} is not reliable at this intensity; confirm by eye or at a lower dilution"
        )


def _bag_doc(
    call: BagCall, classes: list[str], cells: pd.DataFrame, shares: dict[str, float]
) -> dict[str, Any]:
    """The sample's multiple-instance call, its compartments (with the cells' ``shares``), and the cells that drove
    it (highest attention)."""
    p = call.sample
    top = int(p.argmax())
    called = cells[cells["attention"].notna()].sort_values("attention", ascending=False).head(8)
    positive = classes[top] not in aggregate.NEGATIVE
    return {
        "method": BAG_METHOD,
        "dominant_pattern": classes[top],
        "result": "positive" if positive else "negative",
        "icap": icap_code(classes[top]) if positive else None,
        "compartments": aggregate.compartment_calls(
            classes, shares, classes[top] if positive else None, aggregate.MIXED_SHARE
        ),
        "sample_probability": {c: round(float(v), 4) for c, v in zip(classes, p, strict=True)},
        "top_cells": [
            {
                "field": r["field"],
                "box": [int(r["x0"]), int(r["y0"]), int(r["x1"]), int(r["y1"])],
                "attention": round(float(r["attention"]), 4),
                "class": r["class"],
            }
            for r in called.to_dict("records")
        ],
    }


def _finish_field(
    out: Path,
    k: int,
    item: FieldInput,
    img: np.ndarray,
    dets: list[Detection],
    proba: np.ndarray,
    classes: list[str],
    min_confidence: float,
    overlays: dict[str, list[dict[str, str]]],
    cell_rows: list[dict[str, Any]],
    attention: np.ndarray | None = None,
    cell_scores: dict[str, np.ndarray] | None = None,
) -> None:
    """Name the field's cells, draw and save its overlay, and add its cell rows."""
    names = _names(proba, classes, min_confidence)
    shown = list(names)
    if cell_scores:  # the overlay says why a cell has no class
        for i, st in enumerate(cell_scores["status"]):
            shown[i] = SHOWN_STATUS.get(st, shown[i])
    overlay = draw_overlay(img, dets, shown)
    Image.fromarray(overlay).save(out / "overlays" / f"{k:04d}_{item.path.stem}.png")
    overlays.setdefault(item.sample, []).append({"field": str(item.path), "png": thumbnail_b64(overlay, 900)})
    rows = _cell_rows(item, dets, proba, names, classes)
    if cell_scores:
        for i, row in enumerate(rows):
            row["status"] = cell_scores["status"][i]
            for key in ("quality_score", "ood_score"):
                v = cell_scores[key][i]
                row[key] = round(float(v), 4) if np.isfinite(v) else np.nan
    if attention is not None:
        for row, a in zip(rows, attention, strict=True):
            row["attention"] = round(float(a), 6) if np.isfinite(a) else np.nan
    cell_rows.extend(rows)


def _names(proba: np.ndarray, classes: list[str], min_confidence: float) -> list[str]:
    """Per object: its class, ``unidentified`` below ``min_confidence``, or "" when it was not classified."""
    names = []
    for p in proba:
        if np.isnan(p).all():
            names.append("")
        elif p.max() < min_confidence:
            names.append("unidentified")
        else:
            names.append(classes[int(p.argmax())])
    return names


def _field_row(
    item: FieldInput, img: np.ndarray, dets: list[Detection], scale: float | None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "sample": item.sample,
        "field": str(item.path),
        "width": img.shape[1],
        "height": img.shape[0],
        "um_per_px": scale,
    }
    for d in dets:
        row[f"n_{d.label}"] = row.get(f"n_{d.label}", 0) + 1
    return row


def _cell_rows(
    item: FieldInput, dets: list[Detection], proba: np.ndarray, names: list[str], classes: list[str]
) -> list[dict[str, Any]]:
    rows = []
    for i, (d, p, name) in enumerate(zip(dets, proba, names, strict=True)):
        row: dict[str, Any] = {
            "sample": item.sample,
            "field": str(item.path),
            "object": i,
            "kind": d.label,
            "x0": d.box[0],
            "y0": d.box[1],
            "x1": d.box[2],
            "y1": d.box[3],
            "score": round(d.score, 4),
            "area_px": d.area,
            **{k: v for k, v in d.attrs.items() if np.isscalar(v)},
            "class": name,
            "confidence": round(float(np.nanmax(p)), 4) if not np.isnan(p).all() else np.nan,
        }
        row.update({f"p_{c}": round(float(v), 4) for c, v in zip(classes, p, strict=True)})
        rows.append(row)
    return rows


def _aggregate(
    cells: pd.DataFrame, preset: FieldPreset, classes: list[str], min_confidence: float, min_cells: int
) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    if cells.empty:
        return docs
    pcols = [f"p_{c}" for c in classes]
    for sample, df in cells.groupby("sample", sort=True):
        df = df[df[pcols].notna().all(axis=1)]
        proba = df[pcols].to_numpy(dtype=float)
        if preset.aggregator == "differential":
            doc = aggregate.differential(proba, classes, min_confidence=min_confidence, min_cells=min_cells)
        elif preset.aggregator == "ana":
            mitotic = df["mitotic"].astype(bool).to_numpy() if "mitotic" in df else None
            doc = aggregate.ana_report(proba, classes, mitotic, min_confidence=min_confidence)
        else:
            doc = aggregate.verdict(proba, classes)
        doc["task"] = preset.name
        docs[str(sample)] = doc
    return docs


def _screening(
    docs: dict[str, dict[str, Any]],
    cells: pd.DataFrame,
    field_rows: list[dict[str, Any]],
    guard: OodGuard | None,
) -> None:
    """Per sample: cells and fields not evaluable, cells out of distribution, and the guard's verdict; the
    reasons join the sample's flags (shown first in the report)."""
    if "status" not in cells:
        return
    for sample, doc in docs.items():
        df = cells[cells["sample"] == sample]
        fields = [r for r in field_rows if r["sample"] == sample]
        doc["n_not_evaluable"] = int((df["status"] == NOT_EVALUABLE).sum())
        doc["n_out_of_distribution"] = int((df["status"] == OUT_OF_DISTRIBUTION).sum())
        doc["n_fields_not_evaluable"] = sum(r.get("evaluable") is False for r in fields)
        flags = doc.setdefault("flags", [])
        if doc["n_fields_not_evaluable"]:
            flags.append(
                f"{doc['n_fields_not_evaluable']} of {len(fields)} field(s) not evaluable (too blurred): their "
                f"{doc['n_not_evaluable']} cell(s) are not in the result; see the not-evaluable queue"
                if doc["n_not_evaluable"]
                else f"{doc['n_fields_not_evaluable']} of {len(fields)} field(s) not evaluable (too blurred)"
            )
        elif doc["n_not_evaluable"]:
            flags.append(f"{doc['n_not_evaluable']} cell(s) not evaluable (too blurred), not in the result")
        if guard is None:
            continue
        scored = df[df["ood_score"].notna()]
        classified = scored[scored["status"] == CLASSIFIED]
        verdict = guard.check(scored["ood_score"].to_numpy(float), classified["confidence"].to_numpy(float))
        doc["out_of_distribution"] = verdict.as_dict()
        flags.extend(f"out of distribution: {r}" for r in verdict.reasons)
        if doc["n_out_of_distribution"] and not verdict.flagged:
            flags.append(
                f"{doc['n_out_of_distribution']} cell(s) unlike the training images were given no class"
            )


def _render(
    docs: dict[str, dict[str, Any]],
    overlays: dict[str, list[dict[str, str]]],
    settings: dict[str, Any],
    preset: FieldPreset,
) -> str:
    from lablens.report.html import template_environment

    return (
        template_environment()
        .get_template("analyze.html.j2")
        .render(docs=docs, overlays=overlays, settings=settings, preset=preset, version=__version__)
    )
