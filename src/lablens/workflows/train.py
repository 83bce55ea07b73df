"""``lablens train``: labelled images → split → trained model → calibrated, evaluated bundle + report.

Run folder layout::

    RUN/config.yaml          resolved configuration
    RUN/data_report.json     what ingestion found and skipped
    RUN/manifest.csv         the usable images (id, path, label, group, sha256, …)
    RUN/split.json           the grouped split (reused by --resume and by evaluation)
    RUN/checkpoints/         per-epoch checkpoints (resume after a kill)
    RUN/metrics.json         test-set metrics with group-bootstrap CIs
    RUN/predictions.csv      per-image test predictions
    RUN/report.html          the report
    RUN/timing.json          wall seconds of each phase (read data, decode, train, calibration, test, …)
    RUN/bundle/              weights.safetensors + card.json

With k-fold protocols every fold gets the files above under ``RUN/folds/<fold>/`` and ``RUN/metrics.json``
summarises the folds (mean ± sd).

With ``train.nproc`` > 1 (``--nproc``) the same function runs in that many processes started by torchrun's agent
(or under an outer ``torchrun``): every process reads the data and trains its shard; rank 0 alone writes files.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lablens.config import RunConfig
from lablens.data.manifest import Manifest
from lablens.data.splits import (
    Fold,
    check_class_coverage,
    load_split,
    make_split,
    parse_protocol,
    save_split,
)
from lablens.data.synthetic import SyntheticError, SyntheticJoin
from lablens.device import resolve_device
from lablens.errors import LablensError, RunError
from lablens.evaluate.calibration import apply_temperature
from lablens.infer.bundle import CARD, Bundle, save_bundle
from lablens.infer.ood import OodSummary
from lablens.jsonio import write_json
from lablens.library_warnings import library_warnings_to_log
from lablens.models.from_config import estimator_params
from lablens.models.registry import create_estimator, get_spec
from lablens.progress import make_progress
from lablens.timing import Phases
from lablens.train import distributed as D
from lablens.train.calibrate import Calibration, calibrate
from lablens.train.context import FitContext
from lablens.workflows.crop_cells import data_crop_geometry
from lablens.workflows.evaluation_output import evaluate_and_write
from lablens.workflows.printing import print_data_report
from lablens.workflows.reading import read_data, read_pixels, synthetic_join
from lablens.workflows.run_folder import check_new_folder, has_checkpoints, resumed_config, run_folder

SEEN_PREFIX = 12  # hex characters of sha256 kept in the card to recognise training images later
NEW_RUN_HINT = "use --resume to continue that run, or choose a new --out"


@dataclass
class TrainResult:
    """What a training run produced (on rank 0; other ranks of a distributed run get an empty result)."""

    run_dir: Path
    metrics: dict[str, Any]
    bundles: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def report(self) -> Path:
        return self.run_dir / "report.html" if (self.run_dir / "report.html").exists() else self.run_dir


def min_groups_for(protocol: str, missing_classes: str = "drop") -> int:
    """Groups a class needs to be kept when data is read: only ``drop`` leaves small classes out there;
    otherwise the split refuses them by name (or keeps them, not estimable)."""
    if Path(protocol).suffix == ".json" or missing_classes != "drop":
        return 1
    return parse_protocol(protocol).min_groups_per_class


def train(
    data: str | Path | None,
    out: str | Path,
    config: RunConfig | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train, calibrate, evaluate and bundle a model (see module docstring for the run folder).

    Args:
        data: image folder or CSV (None on resume: the run's own config names it).
        out: run folder; must be new or empty unless ``resume``.
        config: resolved run configuration (defaults when None); ``train.nproc`` processes train it.
        resume: continue an interrupted run in ``out`` from its last checkpoint, with its saved config.
        progress: show progress bars and per-epoch lines on stderr.
    """
    t0 = time.perf_counter()
    out = Path(out)
    if resume:
        if (out / "bundle" / CARD).exists():
            raise RunError(f"{out} is already complete (bundle written); nothing to resume")
        cfg = resumed_config(out)
    else:
        cfg = (config or RunConfig()).model_copy(deep=True)
        if data is None:
            raise RunError("no data given")
        cfg.data.path = str(Path(data).resolve())
        if cfg.data.synthetic:
            cfg.data.synthetic = str(Path(cfg.data.synthetic).resolve())
    if cfg.data.synthetic_ratio is not None and not cfg.data.synthetic:
        raise RunError("data.synthetic_ratio is set but data.synthetic names no synthetic set")
    env = D.env_from_torchrun()
    if cfg.train.nproc > 1 and not env.enabled:
        return _launch(out, cfg, resume, progress, t0)
    spec = get_spec(cfg.model.name)
    if spec.capabilities.inputs != "images":
        raise RunError(
            f"{spec.describe()} learns from a sample's cells: train it from fields with --label-level sample"
        )
    params = estimator_params(cfg)
    if env.enabled and not spec.capabilities.distributed:
        raise RunError(f"{spec.describe()} does not train across processes; use --nproc 1")
    device = resolve_device(cfg.train.device, env.local_rank if env.enabled else None)
    with D.process_group(env, device):
        if not resume:
            D.on_main(lambda: check_new_folder(out, NEW_RUN_HINT), env, RunError)
        owns_folder = not resume and env.is_main
        folder = (
            run_folder(out, cfg, keep=has_checkpoints, hint=NEW_RUN_HINT) if owns_folder else nullcontext()
        )
        with folder, make_progress(progress and env.is_main) as prog:
            if resume and not spec.capabilities.resumable:
                prog.log(
                    f"note: {spec.describe()} keeps no checkpoints; unfinished folds are fitted from the start"
                )
            phases = Phases(start=t0)
            metrics, bundles = _run(out, cfg, params, resume, prog, env, phases, show_data=progress)
            if env.is_main:
                write_json(out / "timing.json", phases.to_dict())
                prog.log(f"times: {phases.line()}")
    return TrainResult(out, metrics, bundles, time.perf_counter() - t0)


def _run(
    out: Path,
    cfg: RunConfig,
    params: dict[str, Any],
    resume: bool,
    prog: Any,
    env: D.DistEnv,
    phases: Phases,
    show_data: bool,
) -> tuple[dict[str, Any], list[Path]]:
    with phases("read data"):
        manifest, report = read_data(
            cfg.data.path,
            cfg.data,
            prog,
            min_groups_per_class=min_groups_for(cfg.split.protocol, cfg.split.missing_classes),
        )
    if env.is_main:
        if show_data:
            print_data_report(report)
        write_json(out / "data_report.json", report.to_dict())
        manifest.to_csv(out / "manifest.csv")
    folds = _get_split(out, manifest, cfg, prog, resume, env)
    with phases("decode"):
        if env.local_rank == 0:  # one process per machine decodes; the others then read its cache
            pixels = read_pixels(manifest, cfg.model.image_size, cfg.data, prog)
        D.barrier(env)
        if env.local_rank != 0:
            pixels = read_pixels(manifest, cfg.model.image_size, cfg.data, prog)
    synthetic = synthetic_join(cfg, manifest, prog)
    results = []
    for fold in folds:
        fold_dir = out if len(folds) == 1 else out / "folds" / fold.name
        if env.is_main:
            fold_dir.mkdir(parents=True, exist_ok=True)
        if len(folds) > 1:
            prog.log(
                f"[bold]{fold.name}[/bold]: train {len(fold.train)}, val {len(fold.val)}, test {len(fold.test)}"
            )
        results.append(
            _train_fold(fold_dir, fold, manifest, pixels, cfg, params, resume, prog, env, phases, synthetic)
        )
    if not env.is_main:
        return {}, []
    if len(folds) == 1:
        metrics = results[0][0]
    else:
        metrics = summarise_folds([r[0] for r in results], [f.name for f in folds])
        write_json(out / "metrics.json", metrics)
    return metrics, [r[1] for r in results]


def _get_split(
    out: Path, manifest: Manifest, cfg: RunConfig, progress: Any, resume: bool, env: D.DistEnv
) -> list[Fold]:
    saved = out / "split.json"
    groups = manifest.groups
    proto = cfg.split.protocol
    notes: list[str] = []
    policy = cfg.split.missing_classes
    if resume and saved.exists():
        split, notes = load_split(saved, manifest.ids, groups)
    elif Path(proto).suffix == ".json" or Path(proto).is_file():
        split, notes = load_split(proto, manifest.ids, groups)
        if env.is_main:
            shutil.copyfile(proto, saved)
    else:  # a pure function of (labels, groups, protocol, seed): the same in every process
        split = make_split(
            manifest.y,
            groups,
            proto,
            val_fraction=cfg.split.val_fraction,
            seed=cfg.split.seed,
            classes=manifest.classes,
            missing_classes=policy,
        )
        if env.is_main:
            save_split(split, manifest.ids, groups, saved)
    notes += check_class_coverage(split, manifest.y, groups, manifest.classes, policy)
    for n in notes:
        progress.log(f"split: {n}")
    return split.folds


def _logits_everywhere(device: str, batch_size: int, env: D.DistEnv) -> Any:
    """``(model, X) → logits``, each process scoring its share of ``X`` and every process getting all rows."""

    def logits_of(model: Any, X: np.ndarray) -> np.ndarray:
        rows = D.shard_rows(len(X), env)
        local = {"logits": model.predict_logits(X[rows], device=device, batch_size=batch_size)}
        return D.gather_rows(local, len(X), env)["logits"]

    return logits_of


def _train_fold(
    fold_dir: Path,
    fold: Fold,
    manifest: Manifest,
    pixels: np.ndarray,
    cfg: RunConfig,
    params: dict[str, Any],
    resume: bool,
    prog: Any,
    env: D.DistEnv,
    phases: Phases,
    synthetic: SyntheticJoin | None = None,
) -> tuple[dict, Path]:
    if resume and (fold_dir / "bundle" / CARD).exists():  # a finished fold of an interrupted k-fold run
        prog.log(f"{fold.name}: already finished, kept as it is")
        return json.loads((fold_dir / "metrics.json").read_text(encoding="utf-8")), fold_dir / "bundle"
    labels = manifest.table["label"].to_numpy()
    groups = np.asarray(manifest.groups).astype(str)
    train_x, train_y, train_g = pixels[fold.train], labels[fold.train], groups[fold.train]
    val_x = pixels[fold.val] if len(fold.val) else None
    val_y = labels[fold.val] if len(fold.val) else None
    device = str(resolve_device(cfg.train.device, env.local_rank if env.enabled else None))
    context = FitContext(
        progress=prog,
        checkpoint_dir=fold_dir / "checkpoints",
        resume=resume,
        device=device,
        threads=cfg.train.threads,
        eval_batch_size=cfg.eval.batch_size,
        dist=env,
    )
    fit_x, fit_y, fit_g, syn_doc = train_x, train_y, train_g, None
    if synthetic is not None:
        try:
            fit_x, fit_y, fit_g, syn_doc = synthetic.join(fold, train_x, train_y, train_g)
        except SyntheticError as exc:
            raise RunError(str(exc)) from None
    est = create_estimator(cfg.model.name, **params)
    with phases("train"):
        est.fit(fit_x, fit_y, val_x, val_y, groups=fit_g, groups_val=groups[fold.val], context=context)
    if list(est.classes_) != manifest.classes:
        raise RunError("a class is missing from the training partition; use more data or another split")
    logits_of = _logits_everywhere(device, cfg.eval.batch_size, env)
    calibration = Calibration(1.0, "none", 0, "eval.calibrate is off")
    if cfg.eval.calibrate:
        with phases("calibration"):
            calibration = calibrate(
                est,
                train_x,
                train_y,
                val_x,
                val_y,
                groups=train_g,
                groups_val=groups[fold.val],
                context=FitContext(progress=prog, device=device, threads=cfg.train.threads),
                logits_of=logits_of,
                seed=cfg.split.seed,
            )
    with phases("test"):
        test_logits = logits_of(est, pixels[fold.test])
    caps = type(est).capabilities
    # the OOD summary keeps the validation confidence only of a model that never trained on those images
    with phases("ood summary"):
        val_logits = (
            logits_of(est, val_x)
            if val_x is not None and caps.inputs == "images" and not caps.folds_validation
            else None
        )
    if not env.is_main:
        return {}, fold_dir / "bundle"
    with phases("ood summary"):
        ood = _ood_summary(pixels, fold, est, calibration, val_logits, cfg.split.seed)
    with phases("report and bundle"):
        return _write_fold(
            fold_dir, fold, manifest, pixels, cfg, est, calibration, test_logits, env, prog, syn_doc, ood
        )


def _ood_summary(
    pixels: np.ndarray,
    fold: Fold,
    est: Any,
    calibration: Calibration,
    val_logits: np.ndarray | None,
    seed: int,
) -> dict[str, Any] | None:
    """The bundle's out-of-distribution summary: statistics of the training + validation images and the
    calibrated confidence of the validation images (``val_logits``: None for a model that trained on them, which
    is over-confident there; :mod:`lablens.infer.ood`)."""
    if type(est).capabilities.inputs != "images":
        return None
    top = None if val_logits is None else apply_temperature(val_logits, calibration.temperature).max(axis=1)
    rows = np.concatenate([fold.train, fold.val]).astype(np.int64)
    summary = OodSummary.fit(pixels, top, rows=rows, seed=seed)
    return None if summary is None else summary.to_card()


def _write_fold(
    fold_dir: Path,
    fold: Fold,
    manifest: Manifest,
    pixels: np.ndarray,
    cfg: RunConfig,
    est: Any,
    calibration: Calibration,
    test_logits: np.ndarray,
    env: D.DistEnv,
    prog: Any,
    synthetic: dict[str, Any] | None = None,
    ood: dict[str, Any] | None = None,
) -> tuple[dict, Path]:
    """Rank 0: metrics, predictions, report and the bundle of one fold."""
    test = manifest.subset(fold.test)
    info = run_info(cfg, manifest, fold, est, env)
    if synthetic is not None:
        info["synthetic"] = synthetic
    proba = apply_temperature(test_logits, calibration.temperature)
    metrics = evaluate_and_write(
        fold_dir,
        test,
        pixels[fold.test],
        proba,
        eval_cfg=cfg.eval,
        temperature=calibration.temperature,
        uncalibrated_proba=apply_temperature(test_logits, 1.0),
        history=getattr(est, "history_", []),
        run_info=info,
        title=f"lablens — {cfg.model.name} on {Path(cfg.data.path or '').name}",
        subtitle=f"{fold.name} test set: {len(fold.test)} images never seen in training or model selection",
        estimator=est,
        # what joined the training partition (every figure is on real images)
        extra={"synthetic": synthetic} if synthetic is not None else None,
    )
    seen = manifest.table["sha256"].iloc[np.concatenate([fold.train, fold.val])]
    training = {
        "config": cfg.model_dump(mode="json"),
        "data": cfg.data.path,
        "manifest_hash": manifest.content_hash(),
        "class_counts": manifest.class_counts(),
        "split": {
            "protocol": cfg.split.protocol,
            "seed": cfg.split.seed,
            "fold": fold.name,
            "n_train": len(fold.train),
            "n_val": len(fold.val),
            "n_test": len(fold.test),
        },
        "processes": env.world_size,
        "history": getattr(est, "history_", []),
        "best_epoch": getattr(est, "best_epoch_", None),
        "optimizer_steps": getattr(est, "steps_", None),
        "passes_per_epoch": getattr(est, "passes_", None),
        "frozen_stages": getattr(est, "frozen_stages_", None),
        "seen_sha256_prefixes": sorted({s[:SEEN_PREFIX] for s in seen}),
        "synthetic": synthetic,
    }
    summary = {
        k: metrics["overall"][k]
        for k in ("accuracy", "balanced_accuracy", "macro_f1", "mcc", "kappa", "macro_auc", "ece")
        if k in metrics["overall"]
    }
    bundle: Bundle = save_bundle(
        fold_dir / "bundle",
        est,
        estimator_name=cfg.model.name,
        image_size=cfg.model.image_size,
        resize_mode=cfg.data.resize_mode,
        calibration=calibration.to_dict(),
        training=training,
        metrics={"test": summary, "n_test": len(fold.test), "level": cfg.eval.level},
        crop=data_crop_geometry(cfg.data.path),
        ood=ood,
    )
    prog.log(f"bundle {bundle.path} (hash {bundle.short_hash})")
    return metrics, bundle.path


def run_info(cfg: RunConfig, manifest: Manifest, fold: Fold, est: Any, env: D.DistEnv) -> dict[str, Any]:
    from lablens.infer.bundle import package_versions
    from lablens.nn.tta import estimator_policy

    v = package_versions()
    return {
        "model": cfg.model.name,
        "architecture": getattr(est, "arch_", cfg.model.name),
        "weights": getattr(est, "weights_source_", cfg.model.weights),
        "image size": f"{cfg.model.image_size} px ({cfg.data.resize_mode})",
        "data": cfg.data.path,
        "images (train / val / test)": f"{len(fold.train)} / {len(fold.val)} / {len(fold.test)}",
        "split": f"{cfg.split.protocol} (seed {cfg.split.seed}, {fold.name}, grouped)",
        "manifest hash": manifest.content_hash()[:16],
        "best epoch": getattr(est, "best_epoch_", None),
        "optimiser steps": _steps_line(est),
        "test-time augmentation": estimator_policy(est).describe(),
        "processes": env.world_size,
        "versions": f"lablens {v['lablens']}, torch {v['torch']}, timm {v['timm']}",
    }


def _steps_line(est: Any) -> str | None:
    """How many optimiser steps training ran (and passes per epoch when an epoch took several)."""
    steps = getattr(est, "steps_", None)
    if steps is None:
        return None
    passes = getattr(est, "passes_", 1)
    return f"{steps}" + (f" ({passes} passes over the images per epoch)" if passes > 1 else "")


def summarise_folds(fold_metrics: list[dict], names: list[str]) -> dict[str, Any]:
    """Mean ± sd over folds of every overall metric (the cross-validation estimate)."""
    keys = fold_metrics[0]["overall"].keys()
    summary = {}
    for k in keys:
        values = [m["overall"][k]["value"] for m in fold_metrics]
        finite = [v for v in values if v is not None]
        summary[k] = {
            "mean": float(np.mean(finite)) if finite else None,
            "sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
            "values": values,
        }
    return {
        "schema": "lablens.cv-metrics/1",
        "classes": fold_metrics[0]["classes"],
        "folds": names,
        "summary": summary,
        "notes": [
            f"{name}: {note}"
            for name, m in zip(names, fold_metrics, strict=True)
            for note in m.get("notes", [])
        ],
    }


# -- several processes on this machine (``--nproc``) ---------------------------------------------------------
def _launch(out: Path, cfg: RunConfig, resume: bool, progress: bool, t0: float) -> TrainResult:
    """Run :func:`train` in ``cfg.train.nproc`` processes (torchrun's agent) and return rank 0's result."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    spec = get_spec(cfg.model.name)
    estimator_params(cfg)  # refuse bad settings here, once, before any process starts
    if not spec.capabilities.distributed:
        raise RunError(f"{spec.describe()} does not train across processes; use --nproc 1")
    if not resume:
        check_new_folder(out, NEW_RUN_HINT)
    if not Path(cfg.data.path or "").exists():
        raise RunError(f"{cfg.data.path}: no such file or folder")
    on_gpus = cfg.train.device.startswith("cuda") or (
        cfg.train.device == "auto" and torch.cuda.is_available()
    )
    if on_gpus and torch.cuda.device_count() < cfg.train.nproc:
        raise RunError(
            f"--nproc {cfg.train.nproc} needs as many GPUs; this machine has {torch.cuda.device_count()}"
        )
    if cfg.train.batch_size % cfg.train.nproc:
        raise RunError(
            f"train.batch_size {cfg.train.batch_size} must be a multiple of the {cfg.train.nproc} processes "
            "(each takes an equal share of every batch)"
        )
    with tempfile.TemporaryDirectory(prefix="lablens-ranks-") as messages:
        try:
            results = D.launch(
                cfg.train.nproc,
                _worker,
                (str(out), cfg.model_dump(mode="json"), resume, progress, messages),
            )
        except ChildFailedError as exc:
            raise RunError(_failure_message(Path(messages), exc)) from None
    metrics, bundles = results[0]
    return TrainResult(out, metrics, [Path(b) for b in bundles], time.perf_counter() - t0)


def _worker(
    out: str, cfg: dict[str, Any], resume: bool, progress: bool, messages: str
) -> tuple[dict, list[str]]:
    """One process of a ``--nproc`` run (module level so that it can be started by name)."""
    import os

    rank = D.env_from_torchrun().rank
    try:
        config = RunConfig.model_validate(cfg)
        with library_warnings_to_log():
            result = train(
                None if resume else config.data.path, out, config, resume=resume, progress=progress
            )
    except LablensError as exc:  # a one-line message for the launcher instead of a traceback
        Path(messages, f"rank-{rank}.txt").write_text(" ".join(str(exc).split()), encoding="utf-8")
        os._exit(3)
    return result.metrics, [str(b) for b in result.bundles]


def _failure_message(messages: Path, exc: Exception) -> str:
    written = sorted(messages.glob("rank-*.txt"))
    if written:
        return written[0].read_text(encoding="utf-8")
    failures = getattr(exc, "failures", {}) or {}
    first = next(iter(failures.values()), None)
    reason = getattr(first, "message", "") if first is not None else ""
    return f"a training process failed{': ' + reason if reason else ''}"
