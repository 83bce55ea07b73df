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
    RUN/bundle/              weights.safetensors + card.json

With k-fold protocols every fold gets the files above under ``RUN/folds/<fold>/`` and ``RUN/metrics.json``
summarises the folds (mean ± sd).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lablens.config import RunConfig, dump_config, load_config
from lablens.data.manifest import Manifest
from lablens.data.splits import Fold, load_split, make_split, parse_protocol, save_split
from lablens.evaluate.calibration import fit_temperature
from lablens.infer.bundle import Bundle, save_bundle
from lablens.infer.predictor import softmax_t
from lablens.progress import make_progress
from lablens.registry import accepted_parameters, create_estimator
from lablens.workflows.common import (
    RunError,
    evaluate_and_write,
    print_data_report,
    read_data,
    read_pixels,
    write_json,
)

SEEN_PREFIX = 12  # hex characters of sha256 kept in the card to recognise training images later


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    metrics: dict[str, Any]
    bundles: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def report(self) -> Path:
        return self.run_dir / "report.html" if (self.run_dir / "report.html").exists() else self.run_dir


def estimator_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """Explicit estimator arguments from the typed config."""
    t = cfg.train
    return {
        "weights": cfg.model.weights,
        "image_size": cfg.model.image_size,
        "resize_mode": cfg.data.resize_mode,
        "drop_rate": cfg.model.drop_rate,
        "tta": cfg.model.tta,
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "lr": t.lr,
        "weight_decay": t.weight_decay,
        "warmup_epochs": t.warmup_epochs,
        "label_smoothing": t.label_smoothing,
        "imbalance": t.imbalance,
        "focal_gamma": t.focal_gamma,
        "ema": t.ema,
        "ema_decay": t.ema_decay,
        "monitor": t.monitor,
        "patience": t.patience,
        "augment": t.augment.model_dump(),
        "device": t.device,
        "amp": t.amp,
        "channels_last": t.channels_last,
        "seed": t.seed,
        "threads": t.threads,
        "eval_batch_size": cfg.eval.batch_size,
    }


def fold_estimator_kwargs(cfg: RunConfig, **runtime: Any) -> dict[str, Any]:
    """The config's estimator arguments (and runtime ones) that ``cfg.model.name``'s factory accepts.

    Deep models take the training settings; feature pipelines take only image size, seed, threads and the
    search settings, so a ``lablens train --model handcrafted`` run ignores epochs and learning rates.
    """
    candidates = {
        **estimator_kwargs(cfg),
        "search": cfg.compare.search,
        "search_folds": cfg.compare.search_folds,
        **runtime,
    }
    accepted = accepted_parameters(cfg.model.name)
    unknown = sorted(set(cfg.model.params) - accepted)
    if unknown:
        raise RunError(
            f"model.params {unknown} are not arguments of {cfg.model.name!r}; it takes {', '.join(sorted(accepted))}"
        )
    return {**{k: v for k, v in candidates.items() if k in accepted}, **cfg.model.params}


def _prepare_run_dir(out: Path, cfg: RunConfig, resume: bool) -> RunConfig:
    if resume:
        saved = out / "config.yaml"
        if not saved.is_file():
            raise RunError(f"cannot resume: {out} holds no config.yaml from an earlier run")
        return load_config(saved)
    if out.exists() and any(out.iterdir()):
        raise RunError(
            f"{out} exists and is not empty; use --resume to continue that run, or choose a new --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    return cfg


def _get_split(out: Path, manifest: Manifest, cfg: RunConfig, progress: Any) -> list[Fold]:
    saved = out / "split.json"
    groups = manifest.groups
    proto = cfg.split.protocol
    if saved.exists():
        split, notes = load_split(saved, manifest.ids, groups)
    elif Path(proto).suffix == ".json" or Path(proto).is_file():
        split, notes = load_split(proto, manifest.ids, groups)
        shutil.copyfile(proto, saved)
    else:
        split = make_split(
            manifest.y, groups, proto, val_fraction=cfg.split.val_fraction, seed=cfg.split.seed
        )
        save_split(split, manifest.ids, groups, saved)
        notes = []
    for n in notes:
        progress.log(f"split: {n}")
    return split.folds


def min_groups_for(protocol: str) -> int:
    if Path(protocol).suffix == ".json":
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
        config: resolved run configuration (defaults when None).
        resume: continue an interrupted run in ``out`` from its last checkpoint, with its saved config.
        progress: show progress bars and per-epoch lines on stderr.
    """
    t0 = time.perf_counter()
    out = Path(out)
    cfg = (config or RunConfig()).model_copy(deep=True)
    if data is not None and not resume:
        cfg.data.path = str(Path(data).resolve())
    if cfg.data.path is None and not resume:
        raise RunError("no data given")
    created = not resume and not out.exists()
    cfg = _prepare_run_dir(out, cfg, resume)
    if resume and (out / "bundle" / "card.json").exists():
        raise RunError(f"{out} is already complete (bundle written); nothing to resume")
    try:
        metrics, bundles = _run(out, cfg, resume, progress)
    except BaseException:
        if created and not any(out.rglob("*.safetensors")):
            shutil.rmtree(
                out, ignore_errors=True
            )  # nothing was trained: leave no half-made run folder behind
        raise
    return TrainResult(out, metrics, bundles, time.perf_counter() - t0)


def _run(out: Path, cfg: RunConfig, resume: bool, progress: bool) -> tuple[dict[str, Any], list[Path]]:
    with make_progress(progress) as prog:
        manifest, report = read_data(
            cfg.data.path, cfg.data, prog, min_groups_per_class=min_groups_for(cfg.split.protocol)
        )
        if progress:
            print_data_report(report)
        write_json(out / "data_report.json", report.to_dict())
        manifest.to_csv(out / "manifest.csv")
        folds = _get_split(out, manifest, cfg, prog)
        pixels = read_pixels(manifest, cfg.model.image_size, cfg.data, prog)
        results = []
        for fold in folds:
            fold_dir = out if len(folds) == 1 else out / "folds" / fold.name
            fold_dir.mkdir(parents=True, exist_ok=True)
            if len(folds) > 1:
                prog.log(
                    f"[bold]{fold.name}[/bold]: train {len(fold.train)}, val {len(fold.val)}, test {len(fold.test)}"
                )
            results.append(_train_fold(fold_dir, fold, manifest, pixels, cfg, resume, prog))
        if len(folds) == 1:
            metrics = results[0][0]
        else:
            metrics = summarise_folds([r[0] for r in results], [f.name for f in folds])
            write_json(out / "metrics.json", metrics)
    return metrics, [r[1].path for r in results]


def _train_fold(
    fold_dir: Path,
    fold: Fold,
    manifest: Manifest,
    pixels: np.ndarray,
    cfg: RunConfig,
    resume: bool,
    prog: Any,
) -> tuple[dict, Bundle]:
    labels = manifest.table["label"].to_numpy()
    train_x = pixels[fold.train]
    val_x = pixels[fold.val] if len(fold.val) else None
    est = create_estimator(
        cfg.model.name,
        **fold_estimator_kwargs(
            cfg, checkpoint_dir=str(fold_dir / "checkpoints"), resume=resume, progress=prog
        ),
    )
    est.fit(train_x, labels[fold.train], val_x, labels[fold.val] if len(fold.val) else None)
    if list(est.classes_) != manifest.classes:
        raise RunError("a class is missing from the training partition; use more data or another split")
    temperature = 1.0
    if cfg.eval.calibrate and val_x is not None:
        temperature = fit_temperature(est.predict_logits(val_x), manifest.y[fold.val])
    test = manifest.subset(fold.test)
    test_logits = est.predict_logits(pixels[fold.test])
    proba = softmax_t(test_logits, temperature)
    info = run_info(cfg, manifest, fold, est)
    metrics = evaluate_and_write(
        fold_dir,
        test,
        pixels[fold.test],
        proba,
        eval_cfg=cfg.eval,
        temperature=temperature,
        uncalibrated_proba=softmax_t(test_logits, 1.0),
        history=getattr(est, "history_", []),
        run_info=info,
        title=f"lablens — {cfg.model.name} on {Path(cfg.data.path or '').name}",
        subtitle=f"{fold.name} test set: {len(fold.test)} images never seen in training or model selection",
        estimator=est,
    )
    seen = manifest.table["sha256"].iloc[np.concatenate([fold.train, fold.val])]
    training = {
        "config": cfg.model_dump(),
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
        "history": getattr(est, "history_", []),
        "best_epoch": getattr(est, "best_epoch_", None),
        "seen_sha256_prefixes": sorted({s[:SEEN_PREFIX] for s in seen}),
    }
    summary = {
        k: metrics["overall"][k]
        for k in ("accuracy", "balanced_accuracy", "macro_f1", "mcc", "kappa", "macro_auc", "ece")
        if k in metrics["overall"]
    }
    bundle = save_bundle(
        fold_dir / "bundle",
        est,
        estimator_name=cfg.model.name,
        image_size=cfg.model.image_size,
        resize_mode=cfg.data.resize_mode,
        temperature=temperature,
        training=training,
        metrics={"test": summary, "n_test": len(fold.test), "level": cfg.eval.level},
    )
    prog.log(f"bundle {bundle.path} (hash {bundle.short_hash})")
    return metrics, bundle


def run_info(cfg: RunConfig, manifest: Manifest, fold: Fold, est: Any) -> dict[str, Any]:
    from lablens.infer.bundle import package_versions

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
        "versions": f"lablens {v['lablens']}, torch {v['torch']}, timm {v['timm']}",
    }


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
    }
