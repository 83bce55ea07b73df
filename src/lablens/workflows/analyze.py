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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from lablens import __version__
from lablens.data.io import DecodeLimits, ImageError, read_image
from lablens.data.tables import TableError, number, read_text_csv
from lablens.data.validate import Problem
from lablens.errors import RunError
from lablens.fields import aggregate
from lablens.fields.cell_crops import field_cells
from lablens.fields.crops import draw_overlay
from lablens.fields.detection import Detection
from lablens.fields.icap import icap_code
from lablens.fields.intensity import IntensityScale, field_intensity, sample_intensity
from lablens.fields.pipeline import (
    FieldInput,
    FieldSetupError,
    FieldSpec,
    FieldWork,
    classify_field,
    detect_field,
    field_spec,
    sample_verdict,
)
from lablens.fields.presets import FieldPreset, get_preset
from lablens.infer.bag_call import METHOD as BAG_METHOD
from lablens.infer.bag_call import BagCall, call_bags
from lablens.infer.bundle import BundleError, load_bundle
from lablens.infer.gate import QualityGate
from lablens.infer.ood import OUT_OF_DISTRIBUTION, OodGuard
from lablens.infer.predictor import NOT_EVALUABLE, Predictor, expand_inputs
from lablens.infer.shard import ModelSpec
from lablens.jsonio import write_json
from lablens.progress import console, make_progress
from lablens.quality.reference import ImageReference
from lablens.report.html import thumbnail_b64
from lablens.workflows.analyze_config import AnalyzeConfig
from lablens.workflows.printing import warn
from lablens.workflows.reading import no_usable_image
from lablens.workflows.run_folder import check_new_folder, run_folder

SAMPLE_MODES = ("together", "per-field")
SHOWN_STATUS = {NOT_EVALUABLE: "not evaluable", OUT_OF_DISTRIBUTION: "out of distribution"}  # overlay labels
__all__ = ["AnalyzeConfig", "AnalyzeResult", "FieldInput", "analyze", "read_fields"]


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


def analyze(
    bundle: str | Path,
    fields: list[str | Path],
    out: str | Path,
    cfg: AnalyzeConfig | None = None,
    *,
    progress: bool = True,
    **settings: Any,
) -> AnalyzeResult:
    """Analyse whole fields with a bundle; see the module docstring for what is written.

    ``cfg`` holds the settings (or give them as keywords: ``task="ana"``, …; see :class:`AnalyzeConfig`).
    Every field goes through the one field pipeline (:mod:`lablens.fields.pipeline`) that the review service
    uses too. ``quality`` (a blur-level bundle; a multitask bundle's own quality head without it) scores every
    cell: a cell above ``max_level`` is not evaluable, and so is every cell of a field whose score is above it.
    The bundle's out-of-distribution guard (``ood_alpha``; None: off) flags cells unlike its training images and
    judges each sample. Neither kind of cell enters a differential or pattern call; both are counted.

    ``engine="ray"`` reads and detects fields in Ray tasks and classifies their cells in model actors
    (:mod:`lablens.workflows.analyze_ray`); the results are the local engine's."""
    cfg = AnalyzeConfig.resolve(cfg, settings)
    check_new_folder(Path(out))
    ray = cfg.ray.settings(cfg.engine)
    run = _prepare(bundle, cfg)
    items, skipped = read_fields(list(fields), cfg.samples, cfg.sample_id)
    if not items and not skipped:
        raise RunError("no image files found in the given paths")
    with run_folder(out) as out, make_progress(progress) as prog:
        (out / "overlays").mkdir()
        works = _analyse_fields(out, items, run, _model_spec(bundle, cfg), ray, cfg.min_confidence, prog)
        skipped = skipped + [w.error for w in works if w.error is not None]
        works = [w for w in works if w.error is None]
        if not works:
            raise RunError(no_usable_image(skipped))
        cells = pd.DataFrame([row for w in works for row in w.cell_rows])
        docs = _sample_docs(cells, works, run, cfg)
        written = _settings(bundle, cfg, run, n_fields=len(works), n_skipped=len(skipped))
        _write_outputs(out, cells, works, docs, written, skipped, run.spec.preset)
        cfg.write(out / "analyze.yaml")
    _print_summary(out, run, len(works), cells, docs, skipped, progress)
    return AnalyzeResult(out, docs, cells, skipped)


def _model_spec(bundle: str | Path, cfg: AnalyzeConfig) -> ModelSpec:
    """How a cell classifier is loaded (here, or in a Ray model actor)."""
    return ModelSpec(
        str(bundle),
        quality=str(cfg.quality) if cfg.quality is not None else None,
        max_level=cfg.max_level,
        batch_size=cfg.batch_size,
        device=cfg.device,
        ood_alpha=cfg.ood_alpha,
    )


def _sample_docs(
    cells: pd.DataFrame, works: list[FieldWork], run: _Run, cfg: AnalyzeConfig
) -> dict[str, dict[str, Any]]:
    """Each sample's report: the preset's answer, what was held back and why, its call and intensity, advice."""
    preset, classes = run.spec.preset, run.bundle.classes
    field_rows = [w.row for w in works]
    docs = _aggregate(cells, field_rows, preset, classes, cfg.min_confidence, cfg.min_cells)
    _screening(docs, cells, works, run.guard)
    for sample, call in run.calls.items():
        if sample in docs and call is not None:
            doc = docs[sample]
            doc.update(_bag_doc(call, classes, cells[cells["sample"] == sample], doc["cell_share"]))
    if preset.aggregator == "ana":
        for sample, doc in docs.items():
            _grade_sample(doc, [r["intensity"] for r in field_rows if r["sample"] == sample], run.grading)
    _advise(docs, preset)
    return docs


def _settings(
    bundle: str | Path, cfg: AnalyzeConfig, run: _Run, *, n_fields: int, n_skipped: int
) -> dict[str, Any]:
    """What ``analyze.json`` records: the bundle, the scale and crops used, the gates and what they found."""
    b, spec, preset = run.bundle, run.spec, run.spec.preset
    return {
        "lablens_version": __version__,
        "bundle": str(bundle),
        "bundle_hash": b.hash,
        "classes": b.classes,
        "task": preset.name,
        "detector": preset.detector,
        "detector_kwargs": spec.detector_kwargs,
        "um_per_px": cfg.um_per_px or preset.um_per_px,
        "crop_um": spec.crop_um or preset.crop_um,
        "bundle_crop": b.crop,
        "bundle_inputs": b.inputs,
        "warnings": run.warnings,
        "notes": run.notes,
        "intensity_controls": None
        if run.grading is None
        else {"file": str(cfg.controls), **run.grading.to_dict()},
        "samples": cfg.samples,
        "min_confidence": cfg.min_confidence,
        "min_cells": cfg.min_cells,
        "quality_gate": None
        if run.gate is None
        else {"bundle_hash": run.gate.bundle.hash, "max_level": cfg.max_level, "own_head": run.gate.head},
        "ood": run.guard.describe() if run.guard is not None else None,
        "quality_flags": "relative to the bundle's training images"
        if run.reference is not None
        else "none: the bundle holds no reference of its training images (trained before lablens kept one)",
        "n_fields": n_fields,
        "n_skipped": n_skipped,
    }


def _write_outputs(
    out: Path,
    cells: pd.DataFrame,
    works: list[FieldWork],
    docs: dict[str, dict[str, Any]],
    settings: dict[str, Any],
    skipped: list[Problem],
    preset: FieldPreset,
) -> None:
    """``cells.csv``, ``fields.csv``, ``samples.json``, ``analyze.json``, ``skipped.csv`` and ``report.html``."""
    overlays: dict[str, list[dict[str, str]]] = {}
    for w in works:
        if w.overlay is not None:
            overlays.setdefault(w.item.sample, []).append(w.overlay)
    cells.to_csv(out / "cells.csv", index=False)
    pd.DataFrame([w.row for w in works]).to_csv(out / "fields.csv", index=False)
    write_json(out / "samples.json", docs)
    write_json(out / "analyze.json", settings)
    if skipped:
        pd.DataFrame([s.__dict__ for s in skipped]).to_csv(out / "skipped.csv", index=False)
    (out / "report.html").write_text(_render(docs, overlays, settings, preset), encoding="utf-8")


def _print_summary(
    out: Path,
    run: _Run,
    n_fields: int,
    cells: pd.DataFrame,
    docs: dict[str, dict[str, Any]],
    skipped: list[Problem],
    progress: bool,
) -> None:
    for w in run.warnings:  # shown even when quiet: the calls may not mean what the bundle learnt
        console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    if not progress:
        return
    for n in run.notes:
        console.print(f"  {n}", highlight=False)
    for s in skipped:
        console.print(
            f"  [yellow]skipped[/yellow] {s.path}: {s.reason} [dim]({s.kind})[/dim]", highlight=False
        )
    console.print(
        f"{n_fields} fields, {len(cells)} objects, {len(docs)} sample(s), {len(skipped)} skipped → {out}"
    )


@dataclass
class _Run:
    """What every field of one analysis is read with."""

    bundle: Any
    spec: FieldSpec
    gate: QualityGate | None
    guard: OodGuard | None
    reference: ImageReference | None
    notes: list[str]
    warnings: list[str]
    grading: IntensityScale | None
    calls: dict[str, BagCall | None] = field(default_factory=dict)  # bag bundles: the call of each sample


def _prepare(bundle: str | Path, cfg: AnalyzeConfig) -> _Run:
    """Load the bundle and decide, once, how every field is read (refusing settings that do not apply)."""
    preset = get_preset(cfg.task)
    if cfg.verifier is not None and preset.detector != "smear":
        raise RunError(
            f"--verifier is for blood smear fields; task {preset.name!r} does not use the smear detector"
        )
    b = load_bundle(bundle)
    bags = b.inputs == "bags"
    _check_bag_bundle(bundle, bags, preset, cfg)
    try:
        gate = QualityGate.for_bundle(b, cfg.quality, cfg.max_level) if not bags else None
        guard = OodGuard.for_bundle(b, cfg.ood_alpha)
    except (BundleError, ValueError) as exc:
        raise RunError(str(exc)) from None
    try:
        spec, notes, warnings = field_spec(
            b,
            preset,
            um_per_px=cfg.um_per_px,
            crop_um=cfg.crop_um,
            detector=str(cfg.detector) if cfg.detector is not None else None,
            detector_kwargs=_detector_kwargs(cfg),
            allow_crop_mismatch=cfg.allow_crop_mismatch,
        )
    except FieldSetupError as exc:
        raise RunError(str(exc)) from None
    if cfg.controls is not None and spec.preset.aggregator != "ana":
        raise RunError(f"--controls grade fluorescence intensity; task {preset.name!r} is not an IIF task")
    grading = (
        _intensity_scale(cfg.controls, spec.preset, cfg.um_per_px, spec.detector_kwargs)
        if cfg.controls is not None
        else None
    )
    reference = ImageReference.from_bundle(b) if not bags else None
    return _Run(b, spec, gate, guard, reference, notes, warnings, grading)


def _check_bag_bundle(bundle: str | Path, bags: bool, preset: FieldPreset, cfg: AnalyzeConfig) -> None:
    """A bundle that calls a sample from all of its cells needs cells, takes no quality gate and no Ray engine."""
    if not bags:
        return
    if preset.detector is None:
        raise RunError(f"{bundle} calls a sample from its cells; task {preset.name!r} has no cells to find")
    if cfg.quality is not None:
        raise RunError(f"--quality gates cell classifiers; {bundle} calls a sample from all of its cells")
    if cfg.engine == "ray":
        raise RunError(
            f"{bundle} calls a sample from all of its cells at once; --engine ray analyses fields one by one "
            "and takes cell classifiers only (use --engine local)"
        )


def _detector_kwargs(cfg: AnalyzeConfig) -> dict[str, Any]:
    """The detector's settings with the verifier (checked now, naming its file) and the ignored regions."""
    kwargs = dict(cfg.detector_kwargs)
    if cfg.verifier is not None:
        from lablens.fields.verifier import load_verifier

        try:
            load_verifier(cfg.verifier)  # fail now, naming the file, rather than on the first field
        except (FileNotFoundError, ValueError) as exc:
            raise RunError(str(exc)) from None
        kwargs["verifier"] = str(cfg.verifier)
    if cfg.ignore_regions:
        kwargs["ignore_regions"] = [tuple(int(v) for v in r) for r in cfg.ignore_regions]
    return kwargs


def _analyse_fields(
    out: Path,
    items: list[FieldInput],
    run: _Run,
    model: ModelSpec,
    ray: Any,
    min_confidence: float,
    prog: Any,
) -> list[FieldWork]:
    """Every field through the pipeline, finished (overlay saved, cell rows made), in input order."""
    b, spec = run.bundle, run.spec
    bar = prog.task("analyze fields", len(items))
    done: dict[int, FieldWork] = {}

    def finish(work: FieldWork) -> None:
        if work.error is None and not spec.bags:
            _finish_field(out, work, b.classes, min_confidence)
        work.img = None  # the pixels are not kept beyond their field
        done[work.k] = work
        bar.advance(1)

    pending: list[_Pending] = []  # bag bundles: fields wait until their sample's cells are all found
    if ray is not None:  # the Ray engine's settings
        from lablens.workflows.analyze_ray import analyze_on_ray

        analyze_on_ray(list(enumerate(items)), spec, model, ray, on_field=finish)
    else:
        predictor = Predictor.prepared(
            b,
            warn,
            batch_size=model.batch_size,
            device=model.device,
            gate=run.gate,
            ood_alpha=model.ood_alpha,
        )
        for k, item in enumerate(items):
            work = detect_field(k, item, spec)
            if work.error is None and spec.bags:
                pending.append(_Pending(k, item, work.dets, work.todo, work.crops, work.crop_sha256))
            elif work.error is None:
                classify_field(work, predictor, run.reference)
            finish(work)
    bar.done()
    run.calls = _call_samples(b, pending, model.device) if spec.bags else {}
    for f in pending:
        work = done[f.k]
        work.img = read_image(f.item.path, DecodeLimits()).pixels
        work.proba = np.full((len(f.dets), len(b.classes)), np.nan)
        call = run.calls[f.item.sample]
        attention = np.full(len(f.dets), np.nan)
        if call is not None:
            work.proba[f.todo] = call.cells[f.offset : f.offset + len(f.todo)]
            attention[f.todo] = call.attention[f.offset : f.offset + len(f.todo)]
        _finish_field(out, work, b.classes, min_confidence, attention)
        work.img = None
    return [done[k] for k in sorted(done)]


@dataclass
class _Pending:
    """A field analysed with a bag bundle, waiting for its sample's call: its cells start at ``offset``."""

    k: int
    item: FieldInput
    dets: list[Detection]
    todo: np.ndarray
    crops: np.ndarray
    crop_sha256: list[str]
    offset: int = 0


def _call_samples(b: Any, pending: list[_Pending], device: str) -> dict[str, BagCall | None]:
    """One multiple-instance call per sample over all of its cells (fields in order, cells in field order); None
    for a sample with no cell."""
    by_sample: dict[str, list[_Pending]] = {}
    for f in pending:
        f.offset = sum(len(g.todo) for g in by_sample.get(f.item.sample, []))
        by_sample.setdefault(f.item.sample, []).append(f)
    names = [s for s, fs in by_sample.items() if sum(len(f.todo) for f in fs)]
    bags_ = [np.concatenate([f.crops for f in by_sample[s]]) for s in names]
    calls: dict[str, BagCall | None] = dict.fromkeys(by_sample)
    calls.update(zip(names, call_bags(b, bags_, device), strict=True))
    return calls


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
    out: Path, work: FieldWork, classes: list[str], min_confidence: float, attention: np.ndarray | None = None
) -> None:
    """Name the field's cells, draw and save its overlay, and make its cell rows."""
    names = _names(work.proba, classes, min_confidence)  # type: ignore[arg-type]
    shown = list(names)
    status = work.cell_scores.get("status")
    if status is not None:  # the overlay says why a cell has no class
        for i, st in enumerate(status):
            shown[i] = SHOWN_STATUS.get(st, shown[i])
    overlay = draw_overlay(work.img, work.dets, shown)  # type: ignore[arg-type]
    Image.fromarray(overlay).save(out / "overlays" / f"{work.k:04d}_{work.item.path.stem}.png")
    work.overlay = {"field": str(work.item.path), "png": thumbnail_b64(overlay, 900)}
    work.cell_rows = _cell_rows(work, names, classes, attention)


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


def _cell_rows(
    work: FieldWork, names: list[str], classes: list[str], attention: np.ndarray | None
) -> list[dict[str, Any]]:
    """One row per object: where it is, what it is, its crop's digest, status, scores and quality flags."""
    position = {int(j): n for n, j in enumerate(work.todo)}  # object → its place among the classified
    rows = []
    for i, (d, p, name) in enumerate(zip(work.dets, work.proba, names, strict=True)):  # type: ignore[arg-type]
        n = position.get(i)
        row: dict[str, Any] = {
            "sample": work.item.sample,
            "field": str(work.item.path),
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
        row["crop_sha256"] = work.crop_sha256[n] if n is not None else ""
        if work.cell_scores:
            row["status"] = work.cell_scores["status"][i]
            for key in ("quality_score", "ood_score"):
                v = work.cell_scores[key][i]
                row[key] = round(float(v), 4) if np.isfinite(v) else np.nan
            flags = work.flags[n] if n is not None and work.flags else []
            row["flags"] = ";".join(f.name for f in flags)
            row["flag_reasons"] = " | ".join(f.reason for f in flags)
        if attention is not None:
            row["attention"] = round(float(attention[i]), 6) if np.isfinite(attention[i]) else np.nan
        rows.append(row)
    return rows


def _aggregate(
    cells: pd.DataFrame,
    field_rows: list[dict[str, Any]],
    preset: FieldPreset,
    classes: list[str],
    min_confidence: float,
    min_cells: int,
) -> dict[str, dict[str, Any]]:
    """Per sample (every sample with a readable field, found cells or not): the preset's answer from the cells
    given a call, with what was found on the fields."""
    docs: dict[str, dict[str, Any]] = {}
    pcols = [f"p_{c}" for c in classes]
    for sample in sorted({str(r["sample"]) for r in field_rows}):
        df = cells[cells["sample"].astype(str) == sample] if not cells.empty else cells
        called = df[df[pcols].notna().all(axis=1)] if not df.empty else df
        proba = called[pcols].to_numpy(dtype=float) if not called.empty else np.zeros((0, len(classes)))
        if preset.aggregator == "differential":
            doc = aggregate.differential(proba, classes, min_confidence=min_confidence, min_cells=min_cells)
        elif preset.aggregator == "ana":
            mitotic = called["mitotic"].astype(bool).to_numpy() if "mitotic" in called else None
            doc = aggregate.ana_report(proba, classes, mitotic, min_confidence=min_confidence)
        else:
            doc = aggregate.verdict(proba, classes)
        doc["task"] = preset.name
        objects: dict[str, int] = {}
        doc["n_fields"] = sum(str(r["sample"]) == sample for r in field_rows)
        for r in field_rows:
            if str(r["sample"]) == sample:
                for key, v in r.items():
                    if key.startswith("n_") and key[2:] not in ("not_evaluable", "out_of_distribution"):
                        objects[key[2:]] = objects.get(key[2:], 0) + int(v)
        doc["objects_found"] = objects  # every detected object by kind (what fields.csv counts)
        doc["n_found"] = (
            int(df["kind"].isin(preset.classify).sum()) if preset.classify and not df.empty else len(df)
        )
        docs[sample] = doc
    return docs


def _screening(
    docs: dict[str, dict[str, Any]], cells: pd.DataFrame, works: list[FieldWork], guard: OodGuard | None
) -> None:
    """Per sample: cells and fields not evaluable, cells out of distribution, and the guard's verdict
    (:func:`~lablens.fields.pipeline.sample_verdict`, the service's rule); the reasons join the sample's flags."""
    if "status" not in cells:
        return
    for sample, doc in docs.items():
        df = cells[cells["sample"].astype(str) == sample]
        fields = [w.row for w in works if str(w.item.sample) == sample]
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
        verdict = sample_verdict(guard, [w.scores for w in works if str(w.item.sample) == sample])
        doc["out_of_distribution"] = verdict.as_dict()  # type: ignore[union-attr]
        flags.extend(f"out of distribution: {r}" for r in verdict.reasons)  # type: ignore[union-attr]
        if doc["n_out_of_distribution"] and not verdict.flagged:  # type: ignore[union-attr]
            flags.append(
                f"{doc['n_out_of_distribution']} cell(s) unlike the training images were given no class"
            )


def _advise(docs: dict[str, dict[str, Any]], preset: FieldPreset) -> None:
    """A sample with nothing to report says why and what to do (and loses the flags that assumed cells)."""
    for doc in docs.values():
        held = doc.get("n_not_evaluable", 0) + doc.get("n_out_of_distribution", 0)
        doc["n_held_back"] = held
        if doc["n_found"] and doc["n_found"] == held:
            advice = held_back_advice(
                doc["n_found"], doc.get("n_not_evaluable", 0), doc.get("n_out_of_distribution", 0)
            )
            assumed_cells = ("identified (<", "no cells found", "no white cell identified")
            doc["flags"] = [
                advice,
                *(f for f in doc.get("flags", []) if not any(a in f for a in assumed_cells)),
            ]
        elif not doc["n_found"] and preset.detector is not None:
            doc.setdefault("flags", []).insert(
                0,
                "no cell to classify was found on the fields: check --um-per-px (the field scale), the focus and "
                "that the fields are of this task",
            )


def sample_lines(name: str, doc: dict[str, Any]) -> list[str]:
    """The console summary of one sample (Rich markup): its answer, then its flags (held-back ones in red)."""
    held = doc.get("n_held_back", 0)
    held_text = f", {held} held back" if held else ""
    if "percent" in doc:
        parts = ", ".join(
            f"{c} {v:.1f} %" for c, v in doc["percent"].items() if doc["counts"][c] and v is not None
        )
        head = f"{doc['n_identified']} of {doc['n_found']} white cell(s) identified{held_text}" + (
            f" — {parts}" if parts else " — no differential"
        )
    elif "dominant_pattern" in doc:
        grade = (doc.get("intensity") or {}).get("grade")
        seen = [
            f"{fam} {c['pattern']} ({c['icap']})" for fam, c in (doc.get("compartments") or {}).items() if c
        ]
        head = (
            f"{doc['result']} ({doc['dominant_pattern']})" if doc.get("result") else f"no result{held_text}"
        )
        head += f" — {'; '.join(seen)}" if seen and doc.get("result") == "positive" else ""
        head += f", intensity {grade}" if grade else ""
    else:
        head = doc["verdict"] or f"no result{held_text}"
    lines = [f"[bold]{name}[/bold]: {head}"]
    for flag in doc.get("flags") or []:
        held_flag = "out of distribution" in flag or "not evaluable" in flag or "held back" in flag
        lines.append(f"  {'[red]flag[/red]' if held_flag else '[yellow]flag[/yellow]'} {flag}")
    return lines


def held_back_advice(n_found: int, n_not_evaluable: int, n_ood: int) -> str:
    """What to do when every cell of a sample was held back (shared with the review service)."""
    parts, todo = [], []
    if n_not_evaluable:
        parts.append(f"{n_not_evaluable} not evaluable (too blurred)")
        todo.append("re-image the fields in focus")
    if n_ood:
        parts.append(f"{n_ood} out of distribution (unlike the model's training images)")
        todo.append(
            "check that the stain, the microscope and the field scale (--um-per-px) are those the model was trained "
            "on, or train a model on this laboratory's own images (lablens train)"
        )
    return (
        f"no result: all {n_found} cell(s) were held back — {', '.join(parts)}; {'; '.join(todo)}; the cells are "
        "waiting for a technician in the held-back queues"
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
