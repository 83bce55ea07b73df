"""``lablens compare``: several methods on the same grouped folds, ranked and tested against each other.

Run folder layout::

    OUT/config.yaml            resolved configuration (methods, folds, settings)
    OUT/data_report.json       what ingestion found and skipped
    OUT/manifest.csv           the usable images
    OUT/split.json             the shared folds
    OUT/comparison.json        summaries, ranks, pairwise tests, importances, per-fold metrics
    OUT/ranking.csv            the rank table (one row per method)
    OUT/per_fold.csv           every method × fold: metrics and timings
    OUT/predictions/<m>.csv    out-of-fold probabilities per method
    OUT/report.html            the report
    OUT/winner/bundle/         (``save_winner``) the best method refitted on all images, as a model bundle
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.markup import escape

from lablens.compare.folds import comparison_folds, comparison_protocol
from lablens.compare.methods import Method, parse_method, split_methods
from lablens.compare.report import write_compare_report
from lablens.compare.runner import FoldResult, run_all
from lablens.compare.summary import summarise
from lablens.config import RunConfig, build_config
from lablens.data.manifest import Manifest
from lablens.data.splits import Split, allocate_groups, save_split
from lablens.data.synthetic import SyntheticError
from lablens.errors import RunError, SettingError
from lablens.infer.bundle import save_bundle
from lablens.jsonio import write_json
from lablens.models.from_config import config_value, unused_by_all
from lablens.progress import make_progress
from lablens.train.calibrate import Calibration, calibrate
from lablens.train.context import FitContext
from lablens.workflows.printing import print_data_report
from lablens.workflows.reading import read_data, read_pixels, synthetic_join
from lablens.workflows.run_folder import run_folder


@dataclass
class CompareResult:
    """What a comparison produced."""

    out: Path
    document: dict[str, Any]
    seconds: float
    winner_bundle: Path | None = None

    @property
    def report(self) -> Path:
        return self.out / "report.html"


def compare_config(
    config: str | Path | None, overrides: dict[str, Any], preset: str | None = None
) -> RunConfig:
    """A comparison's config: defaults → a study ``preset`` → the ``config`` file → ``overrides``. Folds given
    without a hold-out replace a hold-out from the preset or file; a comparison without methods is refused."""
    from lablens.presets import load_preset

    cfg = build_config(config, overrides, preset=load_preset(preset) if preset else None)
    if overrides.get("compare.folds") is not None and overrides.get("compare.holdout") is None:
        cfg.compare.holdout = None
    if not cfg.compare.methods:
        raise SettingError("no methods: give --methods or a --preset")
    return cfg


def compare(
    data: str | Path, out: str | Path, config: RunConfig | None = None, *, progress: bool = True
) -> CompareResult:
    """Compare ``config.compare.methods`` on ``data``; write the run folder described in the module docstring."""
    t0 = time.perf_counter()
    cfg = (config or RunConfig()).model_copy(deep=True)
    cfg.data.path = str(Path(data).resolve())
    try:
        methods = [parse_method(m, cfg) for m in split_methods(cfg.compare.methods)]
    except (KeyError, ValueError) as exc:
        raise RunError(f"methods: {exc.args[0] if isinstance(exc, KeyError) else exc}") from exc
    if len({m.name for m in methods}) != len(methods):
        raise RunError("a method is listed twice")
    _check_settings_apply(cfg, methods)
    with run_folder(out, cfg) as folder:  # nothing finished: no half-made folder is left behind
        doc, winner = _run(folder, cfg, methods, progress)
    return CompareResult(folder, doc, time.perf_counter() - t0, winner)


def _check_settings_apply(cfg: RunConfig, methods: list[Method]) -> None:
    """Each run-wide setting goes to the methods that take it; one that none of them takes is an error."""
    unused = unused_by_all(cfg, [m.spec for m in methods])
    if unused:
        shown = ", ".join(f"{key} = {config_value(cfg, key)!r}" for key in unused)
        raise RunError(f"{shown}: a setting of none of the methods ({', '.join(m.name for m in methods)})")
    if cfg.train.nproc > 1:
        raise RunError("train.nproc: a comparison fits its methods one after another in one process")
    if cfg.model.params:
        raise RunError(
            f"model.params {sorted(cfg.model.params)}: give a method's own settings in brackets instead, "
            "e.g. multitask[deblur_weight=0]"
        )


def _run(out: Path, cfg: RunConfig, methods: list[Method], progress: bool) -> tuple[dict, Path | None]:
    c = cfg.compare
    with make_progress(progress) as prog:
        min_groups = 1 if cfg.split.missing_classes != "drop" else 3 if c.holdout else max(c.folds, 3)
        manifest, report = read_data(cfg.data.path, cfg.data, prog, min_groups_per_class=min_groups)
        if progress:
            print_data_report(report)
        write_json(out / "data_report.json", report.to_dict())
        manifest.to_csv(out / "manifest.csv")
        groups = np.asarray(manifest.groups).astype(str)
        folds = comparison_folds(manifest.y, groups, c, cfg.split, manifest.classes)
        save_split(
            Split(comparison_protocol(c), cfg.split.seed, cfg.split.val_fraction, folds),
            manifest.ids,
            groups,
            out / "split.json",
        )
        pixels = read_pixels(manifest, cfg.model.image_size, cfg.data, prog)
        context = FitContext(
            progress=prog,
            device=cfg.train.device,
            threads=cfg.train.threads,
            eval_batch_size=cfg.eval.batch_size,
        )
        synthetic = synthetic_join(cfg, manifest, prog)
        try:
            results = run_all(
                methods, folds, pixels, manifest.y, groups, manifest.classes, context, synthetic
            )
        except SyntheticError as exc:
            raise RunError(str(exc)) from None
        doc = summarise(
            results, [m.name for m in methods], manifest.y, manifest.classes, c.primary_metric, cfg.eval.level
        )
        doc["protocol"] = comparison_protocol(c)
        doc["data"] = cfg.data.path
        doc["n_images"] = len(manifest)
        doc["n_groups"] = int(np.unique(groups).size)
        if synthetic is not None:  # joined every fold's training partition, and nothing else
            per_fold = {r.fold: r.synthetic for r in results if r.synthetic is not None}
            doc["synthetic"] = {
                **next(iter(per_fold.values())),
                "used": {f: d["used"] for f, d in per_fold.items()},
            }
        _write_tables(out, doc, results, manifest, methods)
        winner = None
        if c.save_winner:
            best = next(m for m in methods if m.name == doc["winner"])
            winner = _save_winner(out / "winner", best, manifest, pixels, cfg, doc, context)
            doc["winner_bundle"] = str(winner)
        write_json(out / "comparison.json", doc)
        settings = [
            ("data", f"{cfg.data.path} ({len(manifest)} images, {doc['n_groups']} groups)"),
            (
                "protocol",
                f"{doc['protocol']}, seed {cfg.split.seed}, validation share {cfg.split.val_fraction}",
            ),
            ("image size", f"{cfg.model.image_size} px ({cfg.data.resize_mode})"),
            ("hyper-parameter search", "grouped inner CV" if c.search else "off (defaults)"),
            ("methods", ", ".join(m.name for m in methods)),
        ]
        title = f"lablens compare — {Path(cfg.data.path).name}"
        write_compare_report(out / "report.html", doc, title, settings)
    return doc, winner


def _write_tables(
    out: Path, doc: dict, results: list[FoldResult], manifest: Manifest, methods: list[Method]
) -> None:
    rows = []
    for row in doc["table"]:
        flat = {"rank": row["rank"], "method": row["method"], "mean_fold_rank": row["mean_fold_rank"]}
        for k, s in row["metrics"].items():
            flat[f"{k}_mean"], flat[f"{k}_sd"] = s["mean"], s["sd"]
        flat["fit_s"], flat["predict_s"] = row["fit_s"], row["predict_s"]
        rows.append(flat)
    pd.DataFrame(rows).to_csv(out / "ranking.csv", index=False)
    pd.DataFrame(doc["per_fold"]).to_csv(out / "per_fold.csv", index=False)
    pred_dir = out / "predictions"
    pred_dir.mkdir(exist_ok=True)
    classes = manifest.classes
    for m in methods:
        frames = []
        for r in (r for r in results if r.method == m.name):
            sub = manifest.subset(r.test)
            frame = pd.DataFrame(
                {
                    "fold": r.fold,
                    "id": sub.ids,
                    "label": sub.table["label"].tolist(),
                    "predicted": [classes[i] for i in r.proba.argmax(1)],
                }
            )
            for j, c in enumerate(classes):
                frame[f"p_{c}"] = r.proba[:, j].round(6)
            frames.append(frame)
        pd.concat(frames).to_csv(pred_dir / f"{m.slug}.csv", index=False)


def _save_winner(
    folder: Path,
    method: Method,
    manifest: Manifest,
    pixels: np.ndarray,
    cfg: RunConfig,
    doc: dict,
    context: FitContext,
) -> Path:
    """Refit the winning method on all images (a validation share carved by group for the deep models'
    model selection) and save it as a normal bundle whose card carries the CV estimates. The temperature comes
    from images the refitted model never trained on (:func:`~lablens.train.calibrate.calibrate`)."""
    prog = context.progress
    prog.log(f"refitting the winner {escape(method.name)} on all {len(manifest)} images")
    y, groups = manifest.y, np.asarray(manifest.groups).astype(str)
    vf = cfg.split.val_fraction
    part = allocate_groups(y, groups, (1.0 - vf, vf), np.random.default_rng([cfg.split.seed, 99]))
    train, val = np.flatnonzero(part == 0), np.flatnonzero(part == 1)
    labels = np.asarray(manifest.classes)[y]
    est = method.build()
    parts = (pixels[train], labels[train], pixels[val], labels[val])
    est.fit(*parts, groups=groups[train], groups_val=groups[val], context=context)
    calibration = Calibration(1.0, "none", 0, "eval.calibrate is off")
    if cfg.eval.calibrate:
        calibration = calibrate(est, *parts, groups=groups[train], groups_val=groups[val], context=context)
    row = doc["table"][0]
    folder.mkdir(parents=True, exist_ok=True)
    bundle = save_bundle(
        folder / "bundle",
        est,
        estimator_name=method.estimator,
        image_size=cfg.model.image_size,
        resize_mode=cfg.data.resize_mode,
        calibration=calibration.to_dict(),
        training={
            "config": cfg.model_dump(mode="json"),
            "data": cfg.data.path,
            "manifest_hash": manifest.content_hash(),
            "class_counts": manifest.class_counts(),
            "method": method.name,
            "selected_by": f"lablens compare ({doc['protocol']}), {doc['primary_metric']}",
            "split": {"n_train": len(train), "n_val": len(val), "n_test": 0},
        },
        metrics={
            "cross_validation": {
                k: {"mean": v["mean"], "sd": v["sd"], "ci": v["ci"]} for k, v in row["metrics"].items()
            },
            "note": "refitted on all images after selection; the figures are the cross-validated estimates",
        },
    )
    prog.log(f"winner bundle {bundle.path} (hash {bundle.short_hash})")
    return bundle.path
