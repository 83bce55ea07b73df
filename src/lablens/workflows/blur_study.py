"""``lablens blur-study``: accuracy under graded blur for four strategies, on one grouped split.

The DeepMT-ND comparison, on any labelled dataset. All four arms share the encoder, the training loop and
the settings; only the tasks differ:

- (a) ``single``: a classifier trained on clean images (epoch chosen on clean validation images);
- (b) ``single_blur_aug``: the same classifier trained under the degradation protocol (blur augmentation);
- (c) ``deblur_then_classify``: the multi-task model's decoder restores each test image, then (a) classifies it;
- (d) ``multitask``: classification + blur level + de-blurring, jointly.

Every test image is degraded at every level with fixed records (the same for every arm). The run folder
gets ``blur_study.json`` and ``.csv`` (accuracy and macro F1 per arm and level), PSNR/SSIM of the decoder
per level, the quality gate's flag rates per level (the multi-task quality head, and a ``blur_level`` model
trained on degraded copies of the training images only), ``accuracy_vs_blur.png``, ``report.html``,
``config.yaml`` and the multi-task model's bundle.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.metrics import accuracy_score, f1_score

from lablens import __version__
from lablens.config import RunConfig
from lablens.data.manifest import Manifest
from lablens.data.splits import Fold, make_split
from lablens.errors import RunError
from lablens.infer.bundle import save_bundle
from lablens.infer.gate import expected_level
from lablens.jsonio import write_json
from lablens.models.from_config import estimator_params
from lablens.models.registry import create_estimator
from lablens.progress import console, make_progress
from lablens.quality.degrade import (
    Degradation,
    apply_degradation,
    parse_kinds,
    parse_levels,
    sample_degradation,
)
from lablens.train.context import FitContext
from lablens.train.tasks.blur import BlurSettings, fixed_records
from lablens.workflows.printing import print_data_report
from lablens.workflows.reading import read_data, read_pixels
from lablens.workflows.run_folder import run_folder

ARMS = ("single", "single_blur_aug", "deblur_then_classify", "multitask")
EVAL_SEED = 20231  # the test records: the same for every arm and every run


@dataclass
class BlurStudyResult:
    out: Path
    doc: dict[str, Any]


def _arm_kwargs(cfg: RunConfig, levels: str, kinds: str, noise: float) -> dict[str, dict[str, Any]]:
    """Arguments of the three trained arms: one ``multitask`` estimator each, differing only in tasks.

    ``cfg.model.name`` is the shared encoder; ``cfg.model.params`` go to the multi-task arm (d) only.
    """
    shared = cfg.model_copy(update={"model": cfg.model.model_copy(update={"params": {}})})
    base = estimator_params(shared, "multitask")
    augment = cfg.train.augment
    base.update(
        model_name=cfg.model.name,
        augment=augment.model_copy(update={"blur_prob": 0.0}) if augment else None,  # blur: the protocol's
        kinds=kinds,
        noise=noise,
        levels=levels,
    )
    return {
        "single": {**base, "levels": "0", "quality_weight": 0.0, "deblur_weight": 0.0},
        "single_blur_aug": {**base, "quality_weight": 0.0, "deblur_weight": 0.0},
        "multitask": {**base, **cfg.model.params},
    }


def _scores(y: np.ndarray, logits: np.ndarray, n_classes: int) -> dict[str, float]:
    pred = logits.argmax(1)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=np.arange(n_classes), average="macro", zero_division=0)),
    }


def _image_quality(restored: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """Mean PSNR (dB, capped at 100 for identical images) and SSIM against the clean images."""
    with np.errstate(divide="ignore"):
        psnr = [peak_signal_noise_ratio(c, r, data_range=255) for r, c in zip(restored, clean, strict=True)]
    ssim = [
        structural_similarity(c, r, data_range=255, channel_axis=2)
        for r, c in zip(restored, clean, strict=True)
    ]
    return float(np.mean(np.minimum(psnr, 100.0))), float(np.mean(ssim))


def blur_study(
    data: str | Path,
    out: str | Path,
    cfg: RunConfig,
    *,
    levels: str = "0-4",
    kinds: str = "defocus,gaussian,motion",
    noise: float = 0.01,
    max_level: float = 2.5,
    progress: bool = True,
) -> BlurStudyResult:
    """Train arms (a), (b), (d) on one grouped split and score all four at every blur level."""
    t_start = time.perf_counter()
    lv = _check_levels(levels, kinds)
    cfg = cfg.model_copy(deep=True)
    cfg.data.path = str(data)
    kwargs = _arm_kwargs(cfg, ",".join(map(str, lv)), kinds, noise)
    with run_folder(out, cfg) as out, make_progress(progress) as prog:
        min_groups = 3 if cfg.split.missing_classes == "drop" else 1
        manifest, report = read_data(data, cfg.data, prog, min_groups_per_class=min_groups)
        if progress:
            print_data_report(report)
        pixels = read_pixels(manifest, cfg.model.image_size, cfg.data, prog)
        fold = _study_fold(manifest, cfg)
        labels = manifest.table["label"].to_numpy()
        x_tr, x_va, x_te = pixels[fold.train], pixels[fold.val], pixels[fold.test]
        context = FitContext(
            progress=prog,
            device=cfg.train.device,
            threads=cfg.train.threads,
            eval_batch_size=cfg.eval.batch_size,
        )
        models, timings = _train_arms(kwargs, x_tr, labels[fold.train], x_va, labels[fold.val], context)
        settings = BlurSettings(levels=lv, kinds=parse_kinds(kinds), noise=noise)
        gate_model = _fit_blur_level_model(x_tr, settings, cfg, context)
        rows, deblur, gate = _score_levels(
            models, gate_model, x_te, manifest.y[fold.test], settings, len(manifest.classes), max_level,
            cfg.train.device, prog,
        )  # fmt: skip
        bundle = _save_multitask(out, models["multitask"], cfg, data, manifest, rows)
    doc = _document(rows, deblur, gate, lv, manifest, fold, cfg, max_level, timings, t_start, bundle)
    _write_outputs(out, doc, rows, lv, data, progress)
    return BlurStudyResult(out, doc)


def _check_levels(levels: str, kinds: str) -> tuple[int, ...]:
    """The blur levels of ``--levels`` (``--kinds`` checked too): 0 (clean) and at least one more."""
    lv = parse_levels(levels)
    parse_kinds(kinds)
    if lv[0] != 0 or len(lv) < 2:
        raise RunError("--levels must include 0 (clean) and at least one blur level, e.g. 0-4")
    return lv


def _study_fold(manifest: Manifest, cfg: RunConfig) -> Fold:
    """The one fold of the grouped split of ``cfg.split``; refused without a validation or a test part."""
    split = make_split(
        manifest.y,
        manifest.groups,
        cfg.split.protocol,
        val_fraction=cfg.split.val_fraction,
        seed=cfg.split.seed,
        classes=manifest.classes,
        missing_classes=cfg.split.missing_classes,
    )
    fold = split.folds[0]
    if len(fold.val) == 0 or len(fold.test) == 0:
        raise RunError(f"split {cfg.split.protocol!r} gives no validation or test part; use e.g. 8:1:1")
    return fold


def _train_arms(
    kwargs: dict[str, dict[str, Any]],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    context: FitContext,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit the three trained arms (a), (b), (d) in turn; return them by arm, and their fit times."""
    models, timings = {}, {}
    for letter, arm in zip("abd", ("single", "single_blur_aug", "multitask"), strict=True):
        context.progress.log(f"training ({letter}) {arm}")
        t0 = time.perf_counter()
        est = create_estimator("multitask", **kwargs[arm])
        est.fit(x_train, y_train, x_val, y_val, context=context)
        timings[f"fit_{arm}"] = time.perf_counter() - t0
        models[arm] = est
    return models, timings


def _score_levels(
    models: dict[str, Any], gate_model: Any, x_test: np.ndarray, y_test: np.ndarray, settings: BlurSettings,
    n_classes: int, max_level: float, device: str, progress: Any,
) -> tuple[list[dict], dict[int, dict], dict[int, dict]]:  # fmt: skip
    """Degrade the test images at every level (fixed records, the same for every arm) and score them: each
    arm's accuracy and macro F1 (rows), the decoder's PSNR/SSIM and the quality gate's flag rates by level."""
    rows, deblur, gate = [], {}, {}
    task = progress.task("scoring under blur", len(settings.levels))
    for level in settings.levels:
        records = fixed_records(len(x_test), level, settings, EVAL_SEED)
        blurred = np.stack([apply_degradation(im, r) for im, r in zip(x_test, records, strict=True)])
        logits, mt = _arm_logits(models, x_test, records, device)
        rows += [{"arm": arm, "level": level, **_scores(y_test, logits[arm], n_classes)} for arm in ARMS]
        deblur[level] = _deblur_quality(blurred, mt["deblurred"], x_test)
        gate[level] = _gate_rates(mt.get("level"), gate_model, blurred, max_level)
        task.advance(1)
    task.done()
    return rows, deblur, gate


def _arm_logits(
    models: dict[str, Any], x: np.ndarray, records: list[Degradation], device: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every arm's logits on the images ``x`` degraded by ``records``, and the multi-task model's outputs
    (its restored images included)."""
    mt = models["multitask"].outputs(x, records=records, want_deblurred=True, device=device)
    logits = {
        "single": models["single"].outputs(x, records=records, device=device)["logits"],
        "single_blur_aug": models["single_blur_aug"].outputs(x, records=records, device=device)["logits"],
        "deblur_then_classify": models["single"].predict_logits(mt["deblurred"], device=device),
        "multitask": mt["logits"],
    }
    return logits, mt


def _deblur_quality(blurred: np.ndarray, deblurred: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """PSNR and SSIM against the ``clean`` images: of the ``blurred`` ones and of the decoder's output."""
    psnr_b, ssim_b = _image_quality(blurred, clean)
    psnr_d, ssim_d = _image_quality(deblurred, clean)
    return {
        "psnr_blurred": psnr_b,
        "psnr_deblurred": psnr_d,
        "ssim_blurred": ssim_b,
        "ssim_deblurred": ssim_d,
    }


def _gate_rates(
    head: np.ndarray | None, gate_model: Any, blurred: np.ndarray, max_level: float
) -> dict[str, float | None]:
    """Mean blur level and the fraction flagged above ``max_level``, by the multi-task quality ``head`` (None
    without one) and by the ``blur_level`` model."""
    measured = expected_level(gate_model.predict_proba(blurred), list(gate_model.classes_))
    return {
        "head_mean_level": float(np.mean(head)) if head is not None else None,
        "head_flagged": float(np.mean(head > max_level)) if head is not None else None,
        "blur_level_model_mean": float(np.mean(measured)),
        "blur_level_model_flagged": float(np.mean(measured > max_level)),
    }


def _save_multitask(
    out: Path, model: Any, cfg: RunConfig, data: str | Path, manifest: Manifest, rows: list[dict]
) -> Path:
    """Save the multi-task arm as ``out/multitask/bundle`` with the study's rows as its metrics; return the
    bundle's path."""
    (out / "multitask").mkdir(exist_ok=True)
    bundle = save_bundle(
        out / "multitask" / "bundle",
        model,
        estimator_name="multitask",
        image_size=cfg.model.image_size,
        resize_mode=cfg.data.resize_mode,
        training={
            "config": cfg.model_dump(),
            "data": str(data),
            "manifest_hash": manifest.content_hash(),
        },
        metrics={"blur_study": rows},
    )
    return bundle.path


def _write_outputs(
    out: Path, doc: dict[str, Any], rows: list[dict], lv: tuple[int, ...], data: str | Path, progress: bool
) -> None:
    """Write the document, its table, plot and report into ``out``; print the table unless quiet."""
    write_json(out / "blur_study.json", doc)
    _write_csv(out / "blur_study.csv", rows)
    png = accuracy_vs_blur_png(rows, lv)
    (out / "accuracy_vs_blur.png").write_bytes(png)
    (out / "report.html").write_text(_render(doc, png, str(data)), encoding="utf-8")
    if progress:
        print_blur_table(doc)
        console.print(f"report: {out / 'report.html'}")


def _fit_blur_level_model(x_train: np.ndarray, s: BlurSettings, cfg: RunConfig, context: FitContext) -> Any:
    """The ``blur_level`` quality model, fitted on degraded copies of the training images only."""
    rng = np.random.default_rng([cfg.train.seed, 313])
    images, levels = [], []
    for level in s.levels:
        recs = [sample_degradation(level, s.kinds, rng, s.noise) for _ in range(len(x_train))]
        images.append(np.stack([apply_degradation(im, r) for im, r in zip(x_train, recs, strict=True)]))
        levels += [str(level)] * len(x_train)
    context.progress.log(f"fitting the blur_level quality model on {len(levels)} degraded training crops")
    model = create_estimator("blur_level", image_size=cfg.model.image_size, seed=cfg.train.seed)
    return model.fit(np.concatenate(images), np.asarray(levels), context=context)


def _document(
    rows: list[dict],
    deblur: dict,
    gate: dict,
    lv: tuple[int, ...],
    manifest: Any,
    fold: Any,
    cfg: RunConfig,
    max_level: float,
    timings: dict,
    t_start: float,
    bundle: Path,
) -> dict[str, Any]:
    acc = {(r["arm"], r["level"]): r["accuracy"] for r in rows}
    heavy = lv[-2:]
    summary = {
        arm: {
            "mean_accuracy": float(np.mean([acc[(arm, level)] for level in lv])),
            "heavy_accuracy": float(np.mean([acc[(arm, level)] for level in heavy])),
            "clean_accuracy": acc[(arm, 0)],
        }
        for arm in ARMS
    }
    checks = {
        "heavy_levels": list(heavy),
        "multitask_minus_single_heavy_points": 100
        * (summary["multitask"]["heavy_accuracy"] - summary["single"]["heavy_accuracy"]),
        "multitask_minus_blur_aug_clean_points": 100
        * (summary["multitask"]["clean_accuracy"] - summary["single_blur_aug"]["clean_accuracy"]),
        "deblur_psnr_gain_db": {
            str(k): v["psnr_deblurred"] - v["psnr_blurred"] for k, v in deblur.items() if k > 0
        },
    }
    return {
        "schema": "lablens.blur_study/1",
        "data": cfg.data.path,
        "classes": manifest.classes,
        "n_train": len(fold.train),
        "n_val": len(fold.val),
        "n_test": len(fold.test),
        "levels": list(lv),
        "level_sd_fraction_of_side": 1 / 96,
        "image_size": cfg.model.image_size,
        "model": cfg.model.name,
        "weights": cfg.model.weights,
        "epochs": cfg.train.epochs,
        "max_level": max_level,
        "rows": rows,
        "summary": summary,
        "checks": checks,
        "deblur": {str(k): v for k, v in deblur.items()},
        "gate": {str(k): v for k, v in gate.items()},
        "timings_s": {**timings, "total": time.perf_counter() - t_start},
        "bundle": str(bundle),
        "version": __version__,
    }


def _write_csv(path: Path, rows: list[dict]) -> None:
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)


def accuracy_vs_blur_png(rows: list[dict], levels: tuple[int, ...]) -> bytes:
    from lablens.report.plots import new_figure, style_axes, to_png

    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    for arm, marker in zip(ARMS, "osD^", strict=True):
        ys = [next(r["accuracy"] for r in rows if r["arm"] == arm and r["level"] == lv) for lv in levels]
        ax.plot(levels, ys, marker=marker, label=arm.replace("_", " "))
    ax.set_xlabel("blur level (PSF sd = level × side / 96)")
    ax.set_ylabel("test accuracy")
    ax.set_xticks(list(levels))
    ax.legend(fontsize=8, frameon=False)
    style_axes(ax)
    return to_png(fig)


def print_blur_table(doc: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="accuracy by blur level", title_justify="left")
    table.add_column("arm")
    for lv in doc["levels"]:
        table.add_column(f"L{lv}", justify="right")
    for arm in ARMS:
        vals = {r["level"]: r["accuracy"] for r in doc["rows"] if r["arm"] == arm}
        table.add_row(arm, *(f"{vals[lv]:.3f}" for lv in doc["levels"]))
    console.print(table)
    c = doc["checks"]
    console.print(
        f"multitask − single on the two heaviest levels: {c['multitask_minus_single_heavy_points']:+.1f} points; "
        f"multitask − blur-augmented single on clean: {c['multitask_minus_blur_aug_clean_points']:+.1f} points"
    )


def _render(doc: dict[str, Any], png: bytes, data: str) -> str:
    from lablens.report.html import template_environment

    return (
        template_environment()
        .get_template("blur_study.html.j2")
        .render(doc=doc, arms=ARMS, data=data, png=base64.b64encode(png).decode("ascii"), version=__version__)
    )
