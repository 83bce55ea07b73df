"""``lablens train FIELDS.csv --task ana --label-level sample``: learn from fields with one label per sample.

The fields CSV lists ``path, sample, label`` per field (several fields per sample allowed; optional ``group``
for the patient when it differs from the sample, and ``um_per_px``). Cells are found by the task preset's
detector and cropped by the code ``lablens analyze`` uses (:func:`~lablens.fields.cell_crops.field_cells`); a
multiple-instance model (family ``mil`` or ``mil-mean``) learns each sample's label from its cells. Samples are
the unit of the split (grouped by ``group``), of the metrics and of the bootstrap.

Writes into ``out``: ``config.yaml``, ``sample_run.json`` (task, scale, ignored regions), ``samples.csv`` (the samples and their cell counts), ``split.json``,
``cells.csv`` (each test cell's attention and own top class), ``predictions.csv``, ``metrics.json``,
``report.html`` and, for hold-out and k-fold protocols, a bundle per fold that records its crop geometry.
Protocol ``leave-one-out`` trains one model per group and reports the pooled out-of-fold calls (no bundle).
Each fold checkpoints every epoch and leaves ``fold_outputs.npz`` when it is done: ``--resume`` after a kill keeps
the finished folds and continues the unfinished one from its last epoch.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lablens.config import RunConfig
from lablens.data.io import ImageError, read_image
from lablens.data.manifest import Manifest
from lablens.data.splits import Fold, Split, check_class_coverage, make_split, save_split
from lablens.data.tables import TableError, number, read_text_csv
from lablens.data.validate import Problem
from lablens.errors import RunError
from lablens.evaluate.calibration import apply_temperature, fit_temperature
from lablens.evaluate.summary import evaluate_predictions
from lablens.fields.cell_crops import field_cells, preset_geometry
from lablens.fields.presets import get_preset
from lablens.infer.bundle import save_bundle
from lablens.jsonio import write_json
from lablens.models.from_config import estimator_params
from lablens.models.registry import create_estimator, get_spec
from lablens.progress import console, make_progress
from lablens.train.context import FitContext
from lablens.workflows.reading import limits_from
from lablens.workflows.run_folder import has_checkpoints, resumed_config, run_folder

LEAVE_ONE_OUT = "leave-one-out"
SETTINGS = (
    "sample_run.json"  # the field settings of a run (task, scale, ignored regions), read back by --resume
)
FOLD_OUTPUTS = "fold_outputs.npz"  # a finished fold's test outputs; a resume keeps that fold
NEW_RUN_HINT = "use --resume to continue that run, or choose a new --out"


@dataclass
class SampleCells:
    """The cells of every sample: crops (``n×S×S×3``) and, per cell, its field and box."""

    samples: list[str]
    labels: list[str]
    groups: list[str]
    crops: list[np.ndarray]
    where: list[list[dict[str, Any]]]
    skipped: list[Problem] = field(default_factory=list)


@dataclass
class SampleTrainResult:
    run_dir: Path
    metrics: dict[str, Any]
    bundles: list[Path]
    predictions: pd.DataFrame


@dataclass(frozen=True)
class _FoldRun:
    """What every fold of a run shares: the samples' cells and labels (``y``: class indices of ``classes``), the
    run's config and the model's parameters, the field preset, whether to resume, and the progress sink."""

    cells: SampleCells
    cfg: RunConfig
    params: dict[str, Any]
    classes: list[str]
    y: np.ndarray
    task: str
    resume: bool
    prog: Any


@dataclass(frozen=True)
class _FoldResults:
    """Every fold's test outputs gathered per sample: out-of-fold probabilities (NaN rows for samples no fold
    tested), attention and each cell's top class by sample index, and the bundles the folds wrote."""

    oof: np.ndarray
    attention: dict[int, np.ndarray]
    cell_top: dict[int, np.ndarray]
    bundles: list[Path]


def read_sample_fields(csv: str | Path, label_column: str = "label") -> pd.DataFrame:
    """The fields CSV as text, with one label per sample checked."""
    csv = Path(csv)
    try:
        df = read_text_csv(csv)
    except TableError as exc:
        raise RunError(str(exc)) from None
    need = {"path", "sample", label_column}
    if not need <= set(df.columns):
        raise RunError(f"{csv}: a sample-level fields CSV needs columns path, sample, {label_column}")
    labels = df.groupby("sample")[label_column].nunique()
    mixed = labels[labels > 1]
    if len(mixed):
        raise RunError(
            f"{csv}: sample {mixed.index[0]!r} has {int(mixed.iloc[0])} different labels; one label per sample"
        )
    df = df.assign(label=df[label_column])
    if "group" not in df.columns or (df["group"] == "").all():
        df["group"] = df["sample"]
    df.attrs["root"] = str(csv.parent)
    return df


def collect_cells(
    fields: pd.DataFrame,
    cfg: RunConfig,
    task: str,
    um_per_px: float | None,
    progress: Any,
    ignore_regions: list[tuple[int, int, int, int]] | None = None,
) -> SampleCells:
    """Detect and crop the cells of every field, gathered per sample (fields that cannot be read are skipped);
    ``ignore_regions``: pixel boxes left out of every field, as in ``lablens analyze``."""
    preset = get_preset(task)
    detector_kwargs = dict(preset.detector_kwargs)
    if ignore_regions:
        detector_kwargs["ignore_regions"] = [tuple(int(v) for v in r) for r in ignore_regions]
    root = Path(fields.attrs.get("root", "."))
    size = cfg.model.image_size
    per: dict[str, dict[str, Any]] = {}
    skipped: list[Problem] = []
    bar = progress.task("finding cells", len(fields))
    for i, row in enumerate(fields.to_dict("records")):
        path = Path(row["path"]) if Path(row["path"]).is_absolute() else root / row["path"]
        try:
            scale = number(row.get("um_per_px", ""), "um_per_px", f"fields CSV row {i + 2}") or um_per_px
            img = read_image(path, limits_from(cfg.data)).pixels
        except (ImageError, TableError, OSError) as exc:
            reason = getattr(exc, "reason", str(exc))
            skipped.append(Problem(str(path), getattr(exc, "kind", "unreadable"), reason))
            bar.advance(1)
            continue
        dets, todo, crops = field_cells(img, preset, scale or preset.um_per_px, dict(detector_kwargs), size)
        s = per.setdefault(
            row["sample"], {"label": row["label"], "group": row["group"], "crops": [], "where": []}
        )
        s["crops"].append(crops)
        s["where"].extend({"field": str(path), "box": list(dets[j].box)} for j in todo)
        bar.advance(1)
    bar.done()
    out = SampleCells([], [], [], [], [], skipped)
    for name in sorted(per):
        s = per[name]
        crops = np.concatenate(s["crops"]) if s["crops"] else np.zeros((0, size, size, 3), np.uint8)
        if len(crops) == 0:
            skipped.append(Problem(name, "no_cells", "no cells were found on the sample's fields"))
            continue
        out.samples.append(name)
        out.labels.append(s["label"])
        out.groups.append(s["group"])
        out.crops.append(crops)
        out.where.append(s["where"])
    return out


def sample_folds(
    cells: SampleCells, cfg: RunConfig, classes: list[str], y: np.ndarray
) -> tuple[list[Fold], list[str]]:
    """Folds over samples, grouped by ``group``; ``leave-one-out`` holds out one group at a time and trains on all
    the others (no validation part: the epoch with the lowest training loss is kept)."""
    groups = np.asarray(cells.groups)
    if cfg.split.protocol == LEAVE_ONE_OUT:
        folds = []
        for k, g in enumerate(sorted(set(cells.groups))):
            test = np.flatnonzero(groups == g)
            rest = np.flatnonzero(groups != g)
            folds.append(Fold(f"out-{k + 1:03d}", rest, np.zeros(0, np.int64), test))
        return folds, []
    split = make_split(
        y,
        groups,
        cfg.split.protocol,
        val_fraction=cfg.split.val_fraction,
        seed=cfg.split.seed,
        classes=classes,
        missing_classes=cfg.split.missing_classes,
    )
    notes = check_class_coverage(split, y, groups, classes, cfg.split.missing_classes)
    return split.folds, notes


def train_samples(
    fields_csv: str | Path | None,
    out: str | Path,
    cfg: RunConfig | None = None,
    *,
    task: str = "ana",
    um_per_px: float | None = None,
    ignore_regions: list[tuple[int, int, int, int]] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> SampleTrainResult:
    """Train and evaluate a multiple-instance model from sample-labelled fields (see the module docstring).

    ``resume`` continues an interrupted run in ``out`` with its saved config and field settings: finished folds are
    kept as they are, the unfinished one continues from its last per-epoch checkpoint.
    """
    out = Path(out)
    if resume:
        cfg, saved = _resumed_run(out)
        task, um_per_px, ignore_regions = saved["task"], saved["um_per_px"], saved["ignore_regions"]
        fields_csv = cfg.data.path
    elif cfg is None or fields_csv is None:
        raise RunError("no fields CSV or config given")
    _check_sample_config(cfg)
    params = estimator_params(cfg)
    fields = read_sample_fields(fields_csv, cfg.data.label_column)
    cfg = cfg.model_copy(deep=True)
    cfg.data.path = str(Path(fields_csv).resolve())
    with _sample_folder(out, cfg, resume) as out, make_progress(progress) as prog:
        if not resume:
            regions = [list(r) for r in ignore_regions or []]
            write_json(out / SETTINGS, {"task": task, "um_per_px": um_per_px, "ignore_regions": regions})
        cells = _usable_cells(fields, cfg, task, um_per_px, prog, ignore_regions)
        classes = sorted(set(cells.labels))
        y = np.searchsorted(classes, cells.labels)
        table = _write_samples(out / "samples.csv", cells)
        folds, notes = _split_samples(out / "split.json", cells, cfg, classes, y, prog)
        run = _FoldRun(cells, cfg, params, list(classes), y, task, resume, prog)
        results = _run_folds(folds, out, run)
        metrics, pred = _write_results(out, cells, table, results, cfg, classes, y, notes, task)
    if progress:
        _print_result(metrics, pred)
    return SampleTrainResult(out, metrics, results.bundles, pred)


def _resumed_run(out: Path) -> tuple[RunConfig, dict[str, Any]]:
    """The config and the field settings of the interrupted run in ``out``; a finished run is refused."""
    if (out / "metrics.json").exists():
        raise RunError(f"{out} is already complete (metrics written); nothing to resume")
    return resumed_config(out), _read_settings(out)


def _check_sample_config(cfg: RunConfig) -> None:
    """Refuse a model that does not learn from bags of cells, and synthetic data (image-level only)."""
    spec = get_spec(cfg.model.name)
    if spec.capabilities.inputs != "bags":
        raise RunError(
            f"--label-level sample learns from a sample's cells: use model mil or mil-mean, not {cfg.model.name!r}"
        )
    if cfg.data.synthetic or cfg.data.synthetic_ratio is not None:
        raise RunError("data.synthetic applies to image-level training, not to sample-level runs")


def _sample_folder(out: Path, cfg: RunConfig, resume: bool) -> AbstractContextManager[Path]:
    """The run folder: the interrupted one as it is for a resume, else a new one (kept on failure once a fold
    has finished)."""
    if resume:
        return nullcontext(out)
    return run_folder(out, cfg, keep=lambda folder: has_checkpoints(folder, FOLD_OUTPUTS), hint=NEW_RUN_HINT)


def _usable_cells(
    fields: pd.DataFrame,
    cfg: RunConfig,
    task: str,
    um_per_px: float | None,
    prog: Any,
    ignore_regions: list[tuple[int, int, int, int]] | None,
) -> SampleCells:
    """The cells of every sample (:func:`collect_cells`), each skipped field or sample logged; refuses fewer
    than two samples with cells."""
    cells = collect_cells(fields, cfg, task, um_per_px, prog, ignore_regions)
    for s in cells.skipped:
        prog.log(f"[yellow]skipped[/yellow] {s.path}: {s.reason}")
    if len(cells.samples) < 2:
        raise RunError("fewer than 2 samples with cells: nothing to train on")
    return cells


def _write_samples(path: Path, cells: SampleCells) -> pd.DataFrame:
    """``samples.csv``: each sample with its label, group and number of cells (the table is returned)."""
    table = pd.DataFrame(
        {
            "sample": cells.samples,
            "label": cells.labels,
            "group": cells.groups,
            "n_cells": [len(c) for c in cells.crops],
        }
    )
    table.to_csv(path, index=False)
    return table


def _split_samples(
    path: Path, cells: SampleCells, cfg: RunConfig, classes: list[str], y: np.ndarray, prog: Any
) -> tuple[list[Fold], list[str]]:
    """The folds over samples (:func:`sample_folds`) and the split's notes, logged; the split is written to
    ``path`` unless the protocol is ``leave-one-out``."""
    folds, notes = sample_folds(cells, cfg, classes, y)
    for n in notes:
        prog.log(f"split: {n}")
    if cfg.split.protocol != LEAVE_ONE_OUT:
        save_split(
            Split(cfg.split.protocol, cfg.split.seed, cfg.split.val_fraction, folds),
            cells.samples,
            np.asarray(cells.groups),
            path,
        )
    return folds, notes


def _run_folds(folds: list[Fold], out: Path, run: _FoldRun) -> _FoldResults:
    """Fit every fold in its own folder (or keep a finished one on resume) and gather their test outputs."""
    y, classes, prog = run.y, run.classes, run.prog
    oof = np.full((len(y), len(classes)), np.nan)
    attention: dict[int, np.ndarray] = {}
    cell_top: dict[int, np.ndarray] = {}
    bundles: list[Path] = []
    for fold in folds:
        if len(folds) > 1:
            prog.log(
                f"[bold]{fold.name}[/bold]: train {len(fold.train)}, val {len(fold.val)}, test {len(fold.test)} samples"
            )
        fold_dir = out if len(folds) == 1 else out / "folds" / fold.name
        fold_dir.mkdir(parents=True, exist_ok=True)
        outs = _fold_outputs(fold, fold_dir, run)
        for i, o in zip(fold.test, outs, strict=True):
            oof[i], attention[int(i)], cell_top[int(i)] = o["proba"], o["attention"], o["cell_top"]
        if (fold_dir / "bundle").is_dir():
            bundles.append(fold_dir / "bundle")
    return _FoldResults(oof, attention, cell_top, bundles)


def _fold_outputs(fold: Fold, fold_dir: Path, run: _FoldRun) -> list[dict[str, np.ndarray]]:
    """One fold's test outputs: read back when a resume finds the fold finished, else fitted and saved."""
    done = fold_dir / FOLD_OUTPUTS
    if run.resume and done.exists():
        run.prog.log(f"{fold.name}: already finished, kept as it is")
        return _load_outputs(done)
    outs = _fit_fold(fold, fold_dir, run)
    _save_outputs(done, outs)
    return outs


def _write_results(
    out: Path,
    cells: SampleCells,
    table: pd.DataFrame,
    results: _FoldResults,
    cfg: RunConfig,
    classes: list[str],
    y: np.ndarray,
    notes: list[str],
    task: str,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Score the tested samples and write ``metrics.json``, ``predictions.csv``, ``cells.csv``, ``skipped.csv``
    (when a field or sample was skipped) and ``report.html``; returns the metrics and the prediction table."""
    tested = ~np.isnan(results.oof).any(1)
    manifest_table = table.assign(id=table["sample"], path=table["sample"], sha256="")
    manifest = Manifest(manifest_table[tested].reset_index(drop=True), out, list(classes))
    groups = np.asarray(cells.groups)[tested]
    metrics = _sample_metrics(y[tested], results.oof[tested], classes, groups, cfg, notes)
    write_json(out / "metrics.json", metrics)
    pred = _prediction_table(manifest, results.oof[tested], classes)
    pred.to_csv(out / "predictions.csv", index=False)
    _cell_table(cells, results.attention, results.cell_top, classes).to_csv(out / "cells.csv", index=False)
    if cells.skipped:
        pd.DataFrame([s.__dict__ for s in cells.skipped]).to_csv(out / "skipped.csv", index=False)
    _write_report(out, metrics, manifest, results.oof[tested], classes, cfg, task)
    return metrics, pred


def _sample_metrics(
    y: np.ndarray, proba: np.ndarray, classes: list[str], groups: np.ndarray, cfg: RunConfig, notes: list[str]
) -> dict[str, Any]:
    """The metrics document over samples, bootstrapped by group, with the split's ``notes`` added."""
    metrics = evaluate_predictions(
        y,
        proba,
        classes,
        groups=groups,
        n_boot=cfg.eval.bootstrap,
        level=cfg.eval.level,
        top_k=tuple(cfg.eval.top_k),
        n_bins=cfg.eval.ece_bins,
    )
    metrics["unit"] = "sample"
    metrics["protocol"] = cfg.split.protocol
    metrics["notes"] = list(metrics.get("notes", [])) + notes
    return metrics


def _print_result(metrics: dict[str, Any], pred: pd.DataFrame) -> None:
    """How many samples were called right (with the accuracy's CI), then the run's notes."""
    acc = metrics["overall"]["accuracy"]
    ci = acc.get("ci")
    console.print(
        f"samples called right: {int(pred['correct'].sum())}/{len(pred)} = {acc['value']:.3f}"
        + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci else "")
    )
    for note in metrics["notes"]:
        console.print(f"  [yellow]⚠ {note}[/yellow]", highlight=False)


def _fit_fold(fold: Fold, fold_dir: Path, run: _FoldRun) -> list[dict[str, np.ndarray]]:
    """Fit one fold (checkpointing each epoch), calibrate on its validation samples, bundle it (hold-out and
    k-fold), and return per test sample its calibrated probabilities, attention and each cell's top class."""
    cells, cfg, classes, y, prog = run.cells, run.cfg, run.classes, run.y, run.prog
    task, resume = run.task, run.resume
    est = create_estimator(cfg.model.name, **run.params)
    pick = lambda rows: [cells.crops[i] for i in rows]  # noqa: E731
    labels = np.asarray(cells.labels)
    context = FitContext(
        progress=prog,
        device=cfg.train.device,
        threads=cfg.train.threads,
        checkpoint_dir=fold_dir / "checkpoints",
        resume=resume,
    )
    est.fit(
        pick(fold.train),
        labels[fold.train],
        pick(fold.val) if len(fold.val) else None,
        labels[fold.val] if len(fold.val) else None,
        context=context,
    )
    if list(est.classes_) != classes:
        raise RunError(f"{fold.name}: a class has no training sample; use more samples or another split")
    temperature, fitted_on = 1.0, "none"
    if cfg.eval.calibrate and len(fold.val):
        val_logits = est.predict_logits(pick(fold.val), device=cfg.train.device)
        temperature, fitted_on = fit_temperature(val_logits, y[fold.val]), "validation"
    outs = []
    for o in est.bag_outputs(pick(fold.test), device=cfg.train.device):
        p = apply_temperature(o["logits"][None], temperature)[0]
        outs.append({"proba": p, "attention": o["attention"], "cell_top": o["cell_logits"].argmax(1)})
    if cfg.split.protocol != LEAVE_ONE_OUT:
        save_bundle(
            fold_dir / "bundle",
            est,
            estimator_name=cfg.model.name,
            image_size=cfg.model.image_size,
            resize_mode=cfg.data.resize_mode,
            calibration={"method": "temperature", "temperature": float(temperature), "fitted_on": fitted_on},
            training={
                "config": cfg.model_dump(mode="json"),
                "label_level": "sample",
                "task": task,
                "split": {"protocol": cfg.split.protocol, "fold": fold.name},
                "n_samples": {"train": len(fold.train), "val": len(fold.val), "test": len(fold.test)},
                "history": getattr(est, "history_", []),
            },
            crop=preset_geometry(get_preset(task), cfg.model.image_size).to_dict(),
        )
    return outs


def _save_outputs(path: Path, outs: list[dict[str, np.ndarray]]) -> None:
    """A finished fold's test outputs (plain arrays, no pickle), written last so that a resume can trust them."""
    arrays = {
        f"{k}_{i}": np.asarray(o[k]) for i, o in enumerate(outs) for k in ("proba", "attention", "cell_top")
    }
    tmp = path.with_suffix(".partial.npz")
    np.savez(tmp, n=np.array(len(outs)), **arrays)
    tmp.replace(path)


def _load_outputs(path: Path) -> list[dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        return [{k: z[f"{k}_{i}"] for k in ("proba", "attention", "cell_top")} for i in range(int(z["n"]))]


def _read_settings(out: Path) -> dict[str, Any]:
    path = out / SETTINGS
    if not path.is_file():
        raise RunError(f"cannot resume: {out} holds no {SETTINGS} (not a --label-level sample run)")
    return json.loads(path.read_text(encoding="utf-8"))


def _prediction_table(manifest: Manifest, proba: np.ndarray, classes: list[str]) -> pd.DataFrame:
    pred = proba.argmax(1)
    table = pd.DataFrame(
        {
            "sample": manifest.ids,
            "label": manifest.table["label"].tolist(),
            "group": manifest.table["group"].tolist(),
            "n_cells": manifest.table["n_cells"].tolist(),
            "predicted": [classes[i] for i in pred],
            "probability": proba.max(1).round(6),
            "correct": pred == manifest.y,
        }
    )
    for j, c in enumerate(classes):
        table[f"p_{c}"] = proba[:, j].round(6)
    return table


def _cell_table(
    cells: SampleCells, attention: dict[int, np.ndarray], cell_top: dict[int, np.ndarray], classes: list[str]
) -> pd.DataFrame:
    rows = []
    for i, att in sorted(attention.items()):
        for k, (w, top) in enumerate(zip(att, cell_top[i], strict=True)):
            where = cells.where[i][k]
            x0, y0, x1, y1 = where["box"]
            rows.append(
                {
                    "sample": cells.samples[i],
                    "field": where["field"],
                    "x0": x0,
                    "y0": y0,
                    "x1": x1,
                    "y1": y1,
                    "attention": round(float(w), 6),
                    "relative_attention": round(float(w) * len(att), 4),
                    "cell_class": classes[int(top)],
                }
            )
    return pd.DataFrame(rows)


def _write_report(
    out: Path,
    metrics: dict,
    manifest: Manifest,
    proba: np.ndarray,
    classes: list[str],
    cfg: RunConfig,
    task: str,
) -> None:
    from lablens.report.html import write_report

    write_report(
        out / "report.html",
        metrics,
        y_true=manifest.y,
        proba=proba,
        classes=classes,
        ids=manifest.ids,
        images=None,
        title=f"lablens — {cfg.model.name} on samples of {Path(cfg.data.path or '').name}",
        subtitle=(
            f"{task} samples, {cfg.split.protocol}: each sample called once by a model that never saw it "
            "(multiple-instance learning from sample labels)"
        ),
        run_info={
            "model": cfg.model.name,
            "cell encoder": json.dumps(cfg.model.params) if cfg.model.params else cfg.model.name,
            "crop": f"{get_preset(task).crop_um:g} µm → {cfg.model.image_size} px",
            "samples": len(manifest),
        },
    )
