"""The ``lablens`` command line (Typer). Options are merged into the typed config; nothing below parses argv."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
import typer
from pydantic import ValidationError

from lablens import jsonio
from lablens.config import RunConfig, build_config, describe_validation
from lablens.errors import LablensError, OutputExistsError
from lablens.library_warnings import library_warnings_to_log
from lablens.progress import console
from lablens.verb_config import VerbConfig

app = typer.Typer(
    name="lablens",
    help="Turn a laboratory's own microscopy images into a validated AI reader.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What a command's failure looks like: a :class:`~lablens.errors.LablensError` (bad input or setting) is one
    line ``error: …`` and exit status 1; anything else is a bug in lablens: one line saying so, the traceback
    saved to a log file it names, exit status 70. ``LABLENS_DEBUG=1`` re-raises either."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with library_warnings_to_log():
                return fn(*args, **kwargs)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/yellow] (a training run can be continued with --resume)")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, click.ClickException):
            raise  # the command's own exit status, or a usage error Click reports itself
        except (LablensError, ValidationError) as exc:  # a typed config built from the user's options
            msg = describe_validation(exc) if isinstance(exc, ValidationError) else str(exc)
            console.print(f"[bold red]error:[/bold red] {' '.join(msg.split())}", highlight=False)
            if os.environ.get("LABLENS_DEBUG"):
                raise
            raise typer.Exit(1) from None
        except Exception as exc:
            if os.environ.get("LABLENS_DEBUG"):
                raise
            log = save_traceback(exc)
            console.print(
                f"[bold red]this is a bug in lablens[/bold red] ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:200]}); the traceback is in {log} — please report it with that file",
                highlight=False,
            )
            raise typer.Exit(70) from None

    return wrapper


def save_traceback(exc: BaseException) -> Path:
    """Write ``exc``'s traceback (and the command line) to a new log file in the installation's ``logs`` folder,
    or the temporary folder when that cannot be written; return its path."""
    import tempfile
    import traceback
    from datetime import datetime, timezone

    from lablens.home import ensure_home, lablens_home

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    text = f"lablens {' '.join(sys.argv[1:])}\n\n" + "".join(traceback.format_exception(exc))
    for folder in (lablens_home() / "logs", Path(tempfile.gettempdir())):
        try:
            ensure_home(folder)
            fd, name = tempfile.mkstemp(prefix=f"lablens-bug-{stamp}-", suffix=".log", dir=folder)
        except OSError:
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return Path(name)
    raise exc  # nowhere to write: the traceback itself, printed by Python


def verb_settings(
    ctx: typer.Context,
    cls: type[VerbConfig],
    config: Path | None,
    values: dict[str, Any],
    keys: dict[str, str] | None = None,
) -> Any:
    """The verb's config: the YAML ``config`` file, with the options given on the command line over it (an option
    left at its default keeps the file's value). ``keys``: option → dotted setting where their names differ."""
    given = {}
    for name, value in values.items():
        key = (keys or {}).get(name, name)
        source = ctx.get_parameter_source(name) if key.split(".")[0] in cls.model_fields else None
        if source is not None and source.name != "DEFAULT":  # typer ≥ 0.29 keeps its own copy of Click's enum
            given[key] = value
    return cls.load(config, given)


#: the options whose setting has another name, per verb
RAY_OPTIONS = {"ray_address": "ray.address", "actors": "ray.actors", "actor_cpus": "ray.actor_cpus",
               "actor_gpus": "ray.actor_gpus"}  # fmt: skip
PREDICT_OPTIONS = {"ood": "ood_alpha", **RAY_OPTIONS}
ANALYZE_OPTIONS = {"ignore_region": "ignore_regions", **PREDICT_OPTIONS}
SERVE_OPTIONS = {"ood": "ood_alpha"}
TRAIN_DETECTOR_OPTIONS = {"object_kind": "label", "model": "model_name"}
DEGRADE_OPTIONS = {"label_column": "data.label_column", "group_column": "data.group_column"}
FIT_VERIFIER_OPTIONS = {"not_wbc": "non_wbc"}


MISSING_CLASSES_OPTION = typer.Option(
    None,
    help="A class without images in a partition: refuse (default) | drop (leave small classes out) | "
    "not-estimable (keep; its metrics are reported as not estimable).",
)
LABEL_LEVEL_OPTION = typer.Option(
    "image",
    help="image: DATA holds labelled images | sample: DATA is a fields CSV (path, sample, label) with one "
    "label per sample, learnt from the cells of its fields (multiple-instance model mil / mil-mean).",
)
SYNTHETIC_OPTION = typer.Option(
    None,
    help="Synthetic images (folder with manifest.csv, synthetic=1) that join training partitions only.",
)

#: ``lablens train``'s options → the config keys they set
TRAIN_OPTIONS = {
    "model": "model.name",
    "weights": "model.weights",
    "init": "model.init",
    "image_size": "model.image_size",
    "epochs": "train.epochs",
    "min_steps": "train.min_steps",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "split": "split.protocol",
    "missing_classes": "split.missing_classes",
    "label_column": "data.label_column",
    "group_column": "data.group_column",
    "group_regex": "data.group_regex",
    "reader_column": "data.reader_column",
    "synthetic_ratio": "data.synthetic_ratio",
    "imbalance": "train.imbalance",
    "monitor": "train.monitor",
    "patience": "train.patience",
    "device": "train.device",
    "nproc": "train.nproc",
    "compile": "train.compile",
    "seed": "train.seed",
}


@app.command()
@friendly
def train(
    data: Path | None = typer.Argument(
        None, help="Image folder (root/<class>/<image>) or CSV (path,label[,group,reader])."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="New run folder (or the run to --resume)."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML config; options below override it."
    ),
    model: str | None = typer.Option(None, help="Registered model or any timm model name, e.g. resnet34."),
    weights: str | None = typer.Option(None, help="scratch | imagenet | path to .safetensors/.pth weights."),
    init: Path | None = typer.Option(
        None, help="Warm start: a lablens bundle to start from (its network; head rows kept per known class)."
    ),
    image_size: int | None = typer.Option(None, help="Input size in pixels (square)."),
    epochs: int | None = typer.Option(
        None, help="Maximum epochs (default 8, of at least --min-steps steps)."
    ),
    min_steps: int | None = typer.Option(
        None,
        help="Fewest optimiser steps in all (default 400 unless --epochs is given): small sets take more passes.",
    ),
    batch_size: int | None = typer.Option(None, help="Batch size."),
    lr: float | None = typer.Option(None, help="Peak learning rate (AdamW)."),
    split: str | None = typer.Option(
        None, help="8:1:1 | 9:1 | 70:30 | kfold:5 | repeated-kfold:5x3 | split.json"
    ),
    missing_classes: str | None = MISSING_CLASSES_OPTION,
    label_column: str | None = typer.Option(None, help="CSV/manifest column holding the label."),
    group_column: str | None = typer.Option(None, help="CSV column naming patient/specimen/slide."),
    group_regex: str | None = typer.Option(
        None, help="Regex on file names giving the group, e.g. '^(P\\d+)_'."
    ),
    reader_column: str | None = typer.Option(None, help="CSV column with a second reader's label."),
    synthetic: Path | None = SYNTHETIC_OPTION,
    synthetic_ratio: float | None = typer.Option(
        None, help="Cap each class's synthetic images at this multiple of its real training images."
    ),
    imbalance: str | None = typer.Option(None, help="none | weighted | sampler | focal"),
    monitor: str | None = typer.Option(
        None, help="Validation metric for early stopping: macro_f1 | accuracy | balanced_accuracy | loss"
    ),
    patience: int | None = typer.Option(None, help="Early-stopping patience in epochs."),
    device: str | None = typer.Option(None, help="auto | cpu | cuda | cuda:1"),
    nproc: int | None = typer.Option(
        None, help="Data-parallel processes on this machine (torchrun): one per GPU, or gloo on CPUs."
    ),
    compile: bool | None = typer.Option(
        None, "--compile/--no-compile", help="Compile the training network with torch.compile."
    ),
    seed: int | None = typer.Option(None, help="Seed for split, initialisation and augmentation."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    label_level: str = LABEL_LEVEL_OPTION,
    task: str | None = typer.Option(None, help="With --label-level sample: the field preset (ana | blood)."),
    um_per_px: float | None = typer.Option(
        None, help="With --label-level sample: field scale when the CSV has no um_per_px column."
    ),
    ignore_region: list[str] = typer.Option(
        [], help="With --label-level sample: x0,y0,x1,y1 pixel box left out of every field; repeatable."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train, calibrate and evaluate a model; write metrics, report and a bundle into --out."""
    from lablens.workflows.printing import print_trained
    from lablens.workflows.train_verb import SampleLevel, train_run

    values = locals()
    overrides = {key: values[option] for option, key in TRAIN_OPTIONS.items()}
    overrides["split.seed"] = seed
    overrides["data.synthetic"] = str(synthetic.resolve()) if synthetic else None
    overrides["model.init"] = str(init.resolve()) if init else None
    fields = SampleLevel(task=task, um_per_px=um_per_px, ignore_regions=ignore_region)
    res = train_run(
        data, out, config=config, overrides=overrides, label_level=label_level, fields=fields,
        resume=resume, progress=not quiet,
    )  # fmt: skip
    print_trained(res.metrics, res.run_dir / "report.html", res.bundles)


@app.command()
@friendly
def evaluate(
    bundle: Path = typer.Argument(..., help="Bundle folder or .zip."),
    data: Path = typer.Argument(..., help="Labelled image folder or CSV."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="New folder for metrics.json, predictions.csv, report.html."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML config (its data and eval sections)."
    ),
    group_column: str | None = typer.Option(None, help="CSV column naming patient/specimen/slide."),
    group_regex: str | None = typer.Option(None, help="Regex on file names giving the group."),
    reader_column: str | None = typer.Option(None, help="CSV column with a second reader's label."),
    bootstrap: int | None = typer.Option(None, help="Bootstrap replicates for CIs (0 = none)."),
    include_seen: bool = typer.Option(
        False, "--include-seen", help="Also score images the model trained on."
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Evaluate a bundle on labelled images (images seen in training are left out unless --include-seen)."""
    from lablens.workflows.evaluate import evaluate as run_evaluate
    from lablens.workflows.printing import print_headline

    cfg = build_config(
        config,
        {
            "data.group_column": group_column,
            "data.group_regex": group_regex,
            "data.reader_column": reader_column,
            "eval.bootstrap": bootstrap,
        },
    )
    metrics = run_evaluate(
        bundle,
        data,
        out,
        data_cfg=cfg.data,
        eval_cfg=cfg.eval,
        include_seen=include_seen,
        device=device,
        progress=not quiet,
    )
    print_headline(metrics)
    console.print(f"report: {out / 'report.html'}")


OOD_OPTION = typer.Option(
    "0.01",
    help="Out-of-distribution guard (bundles that carry one): the share of images like the training images "
    "that get flagged (0.05 … 0.001), or off.",
)


@app.command()
@friendly
def retrain(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="The finished `lablens train` run of the model in service."),
    reviews: list[Path] = typer.Option(
        ..., "--reviews", "-r", help="A `lablens export-reviews` folder; repeatable."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="New folder: data, split, locked review cases, run/."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings (a retrain.yaml)."),
    review_test: float = typer.Option(
        0.2, help="Share of review samples (the most recent) held out as locked cases for promote."
    ),
    epochs: int | None = typer.Option(None, help="Epochs (default: the run's own)."),
    start: str = typer.Option(
        "auto", help="bundle: warm-start from the run's bundle | run: from the run's initialisation | auto."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train the run's configuration again on its images plus the technicians' reviewed cells (test locked)."""
    from lablens.workflows.retrain import RetrainConfig
    from lablens.workflows.retrain import retrain as run_retrain

    cfg = verb_settings(ctx, RetrainConfig, config, locals())
    run_retrain(run, list(reviews), out, cfg, progress=not quiet)


@app.command()
@friendly
def promote(
    candidate: Path = typer.Argument(..., help="The new bundle."),
    against: Path = typer.Option(..., "--against", help="The bundle in service."),
    data: list[Path] = typer.Option(
        ..., "--data", "-d", help="Locked labelled cases (folder or CSV); repeatable."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="New folder for promotion.json and report.html."),
    margin: float = typer.Option(0.02, help="Largest tolerated drop in any class's sensitivity."),
    basis: str = typer.Option(
        "estimate", help="estimate (point differences) | ci (non-inferiority: CI bounds)."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (its data section)."),
    group_column: str | None = typer.Option(None, help="CSV column naming patient/specimen/slide."),
    group_regex: str | None = typer.Option(None, help="Regex on file names giving the group."),
    bootstrap: int = typer.Option(2000, help="Bootstrap replicates for the CIs."),
    include_seen: bool = typer.Option(
        False, "--include-seen", help="Also score images either model trained on."
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Compare a candidate with the bundle in service on the same locked cases; refuse it when a class gets worse."""
    from lablens.evaluate.paired import PromotionRule
    from lablens.workflows.promote import promote as run_promote

    cfg = build_config(config, {"data.group_column": group_column, "data.group_regex": group_regex})
    run_promote(
        candidate,
        against,
        list(data),
        out,
        rule=PromotionRule(margin=margin, basis=basis),  # type: ignore[arg-type]
        data_cfg=cfg.data,
        include_seen=include_seen,
        n_boot=bootstrap,
        device=device,
        progress=not quiet,
    )


@app.command()
@friendly
def predict(
    ctx: typer.Context,
    bundle: Path = typer.Argument(..., help="Bundle folder or .zip."),
    paths: list[Path] = typer.Argument(
        ...,
        help="Image files, folders (searched recursively), globs, CSV manifests (path column), .txt lists.",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="A .csv or .json file (small jobs), or a folder: sharded Parquet, resumable."
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="YAML settings (e.g. an earlier job's predict.yaml); options override it.",
    ),
    top_k: int = typer.Option(3, "--top-k", "-k", help="Classes per image, ranked by probability."),
    batch_size: int = typer.Option(64, help="Images per batch."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a .csv/.json --out if it exists."),
    quality: Path | None = typer.Option(
        None, help="Quality (blur-level) bundle: images above --max-level are 'not evaluable'."
    ),
    max_level: float = typer.Option(
        2.5, help="Highest quality score (expected blur level) still classified."
    ),
    backend: str = typer.Option(
        "auto", help="auto (ONNX Runtime on CPU when the bundle has an export) | torch | onnx"
    ),
    tta: str = typer.Option(
        "bundle", help="Test-time augmentation: bundle (its own policy) | off | full | adaptive[=MARGIN]"
    ),
    ood: str = OOD_OPTION,
    engine: str | None = typer.Option(None, help="Folder --out: local (default) | ray"),
    shard_size: int | None = typer.Option(None, help="Folder --out: inputs per Parquet shard (1024)."),
    workers: int | None = typer.Option(None, help="Folder --out, local engine: decoding threads (2)."),
    ray_address: str | None = typer.Option(
        None, help="--engine ray: a cluster (auto, ray://host:10001); default: start a local one."
    ),
    actors: int | None = typer.Option(None, help="--engine ray: model actors (1)."),
    actor_cpus: float | None = typer.Option(None, help="--engine ray: CPUs per model actor (1)."),
    actor_gpus: float | None = typer.Option(None, help="--engine ray: GPUs per model actor (0: CPU)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Classify images: top-k classes with calibrated probabilities and the bundle hash, per image.

    With a folder as --out the job streams to Parquet shards and resumes after a crash (rerun the same command);
    --engine ray runs it as a Ray Data job on this machine or a cluster.
    """
    from lablens.workflows.predict_verb import PredictConfig, predict_run

    cfg = verb_settings(ctx, PredictConfig, config, locals(), PREDICT_OPTIONS)
    predict_run(bundle, list(paths), out, cfg, overwrite=overwrite, progress=not quiet)


@app.command()
@friendly
def suggest(
    ctx: typer.Context,
    bundle: Path = typer.Argument(..., help="Bundle folder or .zip (the model in use, or a related one)."),
    paths: list[Path] = typer.Argument(
        ..., help="Unlabelled images: files, folders, CSV manifests, .txt lists."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder collecting the batches (batch-001.csv, …)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings (a batch-NNN.yaml)."),
    n: int = typer.Option(50, "--n", "-n", help="Images in the batch."),
    rule: str = typer.Option("margin", help="margin | entropy (uncertainty + diversity) | random"),
    pool_factor: float = typer.Option(
        10.0, help="Diversity chooses among the pool_factor × n most uncertain."
    ),
    seed: int = typer.Option(0, help="Breaks ties; draws the random batch."),
    labelled: list[str] = typer.Option([], help="Images already labelled (file, folder or CSV); repeatable."),
    ood: str = OOD_OPTION,
    batch_size: int = typer.Option(64, help="Images per batch of inference."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Suggest the unlabelled images worth a technician's label next: uncertain and diverse; odd ones apart."""
    from lablens.workflows.suggest import SuggestConfig
    from lablens.workflows.suggest import suggest as run_suggest

    cfg = verb_settings(ctx, SuggestConfig, config, locals(), {"ood": "ood_alpha"})
    run_suggest(bundle, list(paths), out, cfg, progress=not quiet)


@app.command()
@friendly
def export(
    ctx: typer.Context,
    bundle: Path = typer.Argument(..., help="Bundle folder (or .zip with --out)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings (format, tolerance)."),
    format: str = typer.Option("onnx", "--format", "-f", help="onnx"),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for model.onnx + onnx.json (default: the bundle)."
    ),
    tolerance: float = typer.Option(
        1e-4, help="Largest allowed probability difference, torch vs ONNX Runtime."
    ),
) -> None:
    """Export a bundle for ONNX Runtime, checked against torch on a fixed batch (parity figures in onnx.json)."""
    from lablens.workflows.export import ExportConfig
    from lablens.workflows.export import export as run_export

    res = run_export(bundle, out, verb_settings(ctx, ExportConfig, config, locals()))
    par = res.card["parity"]
    console.print(
        f"exported → {res.path} (opset {res.card['opset']}); parity on {par['images']} images: "
        f"max |Δp| {par['max_abs_prob_diff']:.1e} ≤ {par['tolerance']:g}",
        highlight=False,
    )


#: ``lablens compare``'s options → the config keys they set
COMPARE_OPTIONS = {
    "folds": "compare.folds",
    "repeats": "compare.repeats",
    "holdout": "compare.holdout",
    "primary_metric": "compare.primary_metric",
    "search": "compare.search",
    "label_column": "data.label_column",
    "group_column": "data.group_column",
    "group_regex": "data.group_regex",
    "image_size": "model.image_size",
    "weights": "model.weights",
    "epochs": "train.epochs",
    "device": "train.device",
    "threads": "train.threads",
    "seed": "train.seed",
}


@app.command()
@friendly
def compare(
    data: Path = typer.Argument(..., help="Image folder (root/<class>/<image>) or CSV (path,label[,group])."),
    methods: str | None = typer.Option(
        None,
        "--methods",
        "-m",
        help="Comma-separated methods: FEATURES:CLASSIFIER (e.g. hu+haralick+lbp:lightgbm, "
        "deep[efficientnet_lite0]:svm_rbf), finetune[MODEL], or a registered model name.",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="New folder for the comparison (default HOME/compare, never reused)."
    ),
    preset: str | None = typer.Option(None, help="Study protocol preset: acevedo2019 | sclerocap2025."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (over the preset)."),
    folds: int | None = typer.Option(None, help="k of grouped stratified k-fold CV (replaces a hold-out)."),
    repeats: int | None = typer.Option(None, help="Repeats of the k-fold CV or of the hold-out."),
    holdout: str | None = typer.Option(None, help="Repeated hold-out instead of k-fold, e.g. 70:30."),
    primary_metric: str | None = typer.Option(None, help="Ranking metric: macro_f1 | accuracy | mcc | …"),
    search: bool | None = typer.Option(
        None, "--search/--no-search", help="Grid-search classifier settings in grouped inner CV."
    ),
    save_winner: bool = typer.Option(
        False, "--save-winner", help="Refit the winner on all data as a bundle."
    ),
    label_column: str | None = typer.Option(None, help="CSV/manifest column holding the label."),
    group_column: str | None = typer.Option(None, help="CSV column naming patient/specimen/slide."),
    group_regex: str | None = typer.Option(None, help="Regex on file names giving the group."),
    image_size: int | None = typer.Option(None, help="Crop size in pixels every method sees."),
    weights: str | None = typer.Option(None, help="Initial weights of finetune[...] methods."),
    epochs: int | None = typer.Option(None, help="Epochs of finetune[...] methods."),
    device: str | None = typer.Option(None, help="auto | cpu | cuda"),
    threads: int | None = typer.Option(None, help="CPU threads for torch and the classifiers."),
    seed: int | None = typer.Option(None, help="Seed of the folds and of every method."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Compare methods on identical grouped folds: ranks, CIs, pairwise tests and an HTML report."""
    from lablens.home import default_output
    from lablens.workflows.compare import compare as run_compare
    from lablens.workflows.compare import compare_config
    from lablens.workflows.printing import print_compared

    values = locals()
    overrides: dict[str, Any] = {key: values[option] for option, key in COMPARE_OPTIONS.items()}
    overrides["split.seed"] = seed
    overrides["compare.methods"] = [methods] if methods else None
    overrides["compare.save_winner"] = True if save_winner else None
    cfg = compare_config(config, overrides, preset)
    print_compared(run_compare(data, out or default_output("compare"), cfg, progress=not quiet))


@app.command()
@friendly
def degrade(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="Image folder or CSV to degrade."),
    out: Path = typer.Argument(..., help="New folder for the degraded copies and manifest.csv."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings (a degrade.yaml)."),
    levels: str = typer.Option("0-4", help="Blur levels, e.g. 0-4 or 0,2,4 (level L: PSF sd L·side/96 px)."),
    kinds: str = typer.Option("defocus,gaussian,motion", help="Blur kinds drawn per copy."),
    noise: float = typer.Option(
        0.01, help="Largest sensor-noise sd (0..1 intensity units) of blurred copies."
    ),
    size: int | None = typer.Option(None, help="Resize each image to a size×size crop first."),
    label_column: str | None = typer.Option(None, help="CSV/manifest column holding the label."),
    group_column: str | None = typer.Option(None, help="CSV column naming patient/specimen/slide."),
    seed: int = typer.Option(0, help="Same seed, same files."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Write every image at graded blur levels (a synthetic-blur database) with the recipe of each copy."""
    from lablens.workflows.degrade import DegradeConfig
    from lablens.workflows.degrade import degrade as run_degrade

    cfg = verb_settings(ctx, DegradeConfig, config, locals(), DEGRADE_OPTIONS)
    run_degrade(data, out, cfg, progress=not quiet)


@app.command()
@friendly
def quality(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings (a quality.yaml)."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Quality (blur-level) bundle."),
    max_level: float = typer.Option(2.5, help="Highest quality score (expected blur level) still evaluable."),
    size: int = typer.Option(128, help="Crop size the measures are taken at."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Per-image CSV."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Per-image quality (sharpness, exposure, noise; with --model a score and flag) and a summary."""
    from lablens.workflows.quality import QualityConfig
    from lablens.workflows.quality import quality as run_quality

    run_quality(paths, out, verb_settings(ctx, QualityConfig, config, locals()), progress=not quiet)


@app.command("blur-study")
@friendly
def blur_study(
    data: Path = typer.Argument(..., help="Labelled image folder or CSV."),
    out: Path = typer.Option(..., "--out", "-o", help="New folder for the study."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML config; options below override it."
    ),
    model: str | None = typer.Option(None, help="timm CNN shared by all arms (default efficientnet_lite0)."),
    weights: str | None = typer.Option(None, help="scratch | imagenet | weights file."),
    image_size: int | None = typer.Option(None, help="Crop size in pixels."),
    epochs: int | None = typer.Option(None, help="Epochs of each arm."),
    levels: str = typer.Option("0-4", help="Blur levels (0 = clean)."),
    kinds: str = typer.Option("defocus,gaussian,motion", help="Blur kinds."),
    max_level: float = typer.Option(2.5, help="Quality gate: highest score still evaluable."),
    label_column: str | None = typer.Option(None, help="CSV/manifest column holding the label."),
    group_column: str | None = typer.Option(None, help="CSV column naming patient/specimen/slide."),
    device: str | None = typer.Option(None, help="auto | cpu | cuda"),
    threads: int | None = typer.Option(None, help="CPU threads."),
    seed: int | None = typer.Option(None, help="Seed of the split and the training."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Accuracy vs blur level for single-task, blur-augmented, de-blur-then-classify and multi-task models."""
    from lablens.workflows.blur_study import blur_study as run_study

    defaults = {
        "model.name": "efficientnet_lite0",
        "model.weights": "imagenet",
        "model.image_size": 96,
        "train.epochs": 10,
    }
    cfg = build_config(
        config,
        {
            "model.name": model,
            "model.weights": weights,
            "model.image_size": image_size,
            "train.epochs": epochs,
            "data.label_column": label_column,
            "data.group_column": group_column,
            "train.device": device,
            "train.threads": threads,
            "train.seed": seed,
            "split.seed": seed,
        },
        defaults=defaults,
    )
    run_study(data, out, cfg, levels=levels, kinds=kinds, max_level=max_level, progress=not quiet)


@app.command()
@friendly
def analyze(
    ctx: typer.Context,
    bundle: Path = typer.Argument(..., help="Trained bundle (folder or .zip) that classifies single cells."),
    fields: list[Path] = typer.Argument(
        ..., help="Field images or folders, or one CSV (path[,sample][,um_per_px])."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="New folder for the results."),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="YAML settings (e.g. an earlier run's analyze.yaml); options override it.",
    ),
    task: str = typer.Option("blood", help="blood (WBC differential) | ana (HEp-2 IIF) | nailfold (frames)."),
    um_per_px: float | None = typer.Option(None, help="Field scale in µm per pixel (default: the task's)."),
    samples: str = typer.Option("together", help="together: all fields are one sample | per-field."),
    sample_id: str | None = typer.Option(None, help="Name of the sample when --samples together."),
    min_confidence: float = typer.Option(0.5, help="Cells below this top probability are unidentified."),
    min_cells: int = typer.Option(100, help="Differential: flag samples with fewer identified cells."),
    ignore_region: list[str] = typer.Option(
        [], help="x0,y0,x1,y1 pixel box to leave out (scale bar, label); repeatable."
    ),
    verifier: Path | None = typer.Option(
        None, help="White-cell verifier fitted on your annotated fields (`lablens fit-verifier`); blood only."
    ),
    detector: Path | None = typer.Option(
        None,
        help="A detector trained on your annotated fields (`lablens train-detector`, its detector/ folder).",
    ),
    crop_um: float | None = typer.Option(
        None, help="Side of a cell crop in µm (default: the task's); match the bundle's training crops."
    ),
    allow_crop_mismatch: bool = typer.Option(
        False, help="Analyse even when the bundle was trained on crops of another size, object or centring."
    ),
    controls: Path | None = typer.Option(
        None,
        help="ANA: CSV of control fields (path, control = negative | positive at the screening cut-off) "
        "imaged like the samples; grades each sample's intensity negative / intermediate / positive.",
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    quality: Path | None = typer.Option(
        None,
        help="Quality (blur-level) bundle: fields and cells above --max-level are 'not evaluable' and left out "
        "of the result (a multitask bundle's own quality head does this without it).",
    ),
    max_level: float = typer.Option(2.5, help="Highest quality score (expected blur level) still evaluable."),
    ood: str = OOD_OPTION,
    engine: str = typer.Option("local", help="local | ray (detection in Ray tasks, cells in model actors)"),
    ray_address: str | None = typer.Option(
        None, help="--engine ray: a cluster (auto, ray://host:10001); default: start a local one."
    ),
    actors: int | None = typer.Option(None, help="--engine ray: model actors (1)."),
    actor_cpus: float | None = typer.Option(None, help="--engine ray: CPUs per model actor (1)."),
    actor_gpus: float | None = typer.Option(None, help="--engine ray: GPUs per model actor (0: CPU)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Detect cells on whole fields, classify each, and report the sample (differential, ANA, verdict)."""
    from lablens.workflows.analyze import AnalyzeConfig, sample_lines
    from lablens.workflows.analyze import analyze as run_analyze

    cfg = verb_settings(ctx, AnalyzeConfig, config, locals(), ANALYZE_OPTIONS)
    result = run_analyze(bundle, list(fields), out, cfg, progress=not quiet)
    for name, doc in result.samples.items():
        for line in sample_lines(name, doc):
            console.print(line, highlight=False)


@app.command("fields-csv")
@friendly
def fields_csv_cmd(
    ctx: typer.Context,
    source: Path = typer.Argument(
        ..., help="A CSV with a path column (and a label per field/slide), or a folder."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="New fields CSV: path, sample[, label][, um_per_px]."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings (a fields CSV's .yaml)."),
    label_column: str | None = typer.Option(
        None, help="Column holding the label (default: label, slide_label …)."
    ),
    sample_column: str | None = typer.Option(None, help="Column naming each field's sample (serum, slide)."),
    sample_regex: str | None = typer.Option(
        None, help="Regex on file names giving the sample, e.g. '^([A-Z]+-\\d+)' (ACA-2-t.jpg → ACA-2)."
    ),
    um_per_px: float | None = typer.Option(None, help="Field scale of every field, in µm per pixel."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Turn a slide-label CSV or a folder of fields into the fields CSV analyze, crop-cells and train read."""
    from lablens.workflows.fields_csv import FieldsCsvConfig, fields_csv

    fields_csv(source, out, verb_settings(ctx, FieldsCsvConfig, config, locals()), progress=not quiet)


@app.command("crop-cells")
@friendly
def crop_cells_cmd(
    ctx: typer.Context,
    fields: list[Path] = typer.Argument(
        ..., help="Annotated fields: images or folders, or one CSV (path[,sample][,um_per_px])."
    ),
    annotations: Path = typer.Option(
        ...,
        help="Boxes with a label per cell: a CSV (path,label,x0,y0,x1,y1), a COCO .json, or a VOC folder.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="New dataset folder (ImageFolder + manifest.csv)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings (a crop_cells.yaml)."),
    task: str = typer.Option(
        "ana", help="Field preset whose crop size and object kind are used (ana | blood)."
    ),
    whole_cells: bool = typer.Option(
        False,
        "--whole-cells",
        help="IIF boxes hold whole cells (cytoplasmic patterns): 30 µm crops; analyze then detects whole cells.",
    ),
    label: str | None = typer.Option(
        None,
        help="CSV column, or COCO annotation attribute, holding the cell's label (default: label / category).",
    ),
    um_per_px: float | None = typer.Option(None, help="Field scale when the fields CSV gives none."),
    crop_um: float | None = typer.Option(None, help="Side of a crop in µm (default: the task's)."),
    image_size: int = typer.Option(128, help="Side of the written crops in pixels."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Cut single-cell training images from annotated fields the way `lablens analyze` cuts them."""
    from lablens.workflows.crop_cells import CropCellsConfig, crop_annotated_cells

    cfg = verb_settings(ctx, CropCellsConfig, config, locals())
    crop_annotated_cells(list(fields), annotations, out, cfg, progress=not quiet)


@app.command("train-detector")
@friendly
def train_detector_cmd(
    ctx: typer.Context,
    fields: list[Path] = typer.Argument(
        ..., help="Annotated fields: images or folders, or one CSV (path[,sample][,um_per_px])."
    ),
    annotations: Path = typer.Option(
        ..., help="Boxes of the objects: a CSV (path,x0,y0,x1,y1[,label]), a COCO .json, or a VOC folder."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="New run folder (detector/ bundle + metrics.json)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings (a train_detector.yaml)."),
    task: str = typer.Option("ana", help="Field preset whose default scale is used (ana | blood)."),
    um_per_px: float | None = typer.Option(None, help="Field scale when the fields CSV gives none."),
    object_kind: str = typer.Option("cell", "--object", help="What the boxes hold (cell, nucleus, wbc …)."),
    model: str = typer.Option("efficientnet_lite0", help="timm backbone."),
    weights: str = typer.Option("imagenet", help="Backbone weights: imagenet | scratch | a local file."),
    epochs: int = typer.Option(20, min=1),
    batch_size: int = typer.Option(16, min=2),
    work_um_per_px: float = typer.Option(0.8, help="Scale the network sees (µm per pixel)."),
    threshold: float = typer.Option(0.3, help="Smallest centre probability reported as an object."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train a field detector on your annotated fields (e.g. whole cells of cytoplasmic IIF patterns)."""
    from lablens.workflows.train_detector import TrainDetectorConfig, train_detector

    cfg = verb_settings(ctx, TrainDetectorConfig, config, locals(), TRAIN_DETECTOR_OPTIONS)
    train_detector(list(fields), annotations, out, cfg, progress=not quiet)


@app.command()
@friendly
def synthesize(
    data: Path = typer.Argument(..., help="Image folder (root/<class>/<image>) or CSV (path,label[,group])."),
    classes: str = typer.Option(..., help="Comma-separated classes to synthesise, e.g. gbi."),
    n: int = typer.Option(500, "--n", min=1, help="Images per class."),
    out: Path = typer.Option(..., "--out", "-o", help="New folder: the synthetic set and its generator."),
    method: str = typer.Option(
        "gan", help="gan (FastGAN-style with DiffAugment) or diffusion (DDPM trained, DDIM sampled)."
    ),
    image_size: int = typer.Option(64, help="Side of the generated images (32, 64, 128 …)."),
    epochs: int | None = typer.Option(
        None, min=1, help="Generator training epochs (default: gan 60, diffusion 40)."
    ),
    split: Path | None = typer.Option(
        None, help="A run's split.json: the generator learns from its training partition only."
    ),
    generator: Path | None = typer.Option(
        None, help="Reuse a generator bundle (SYN/generator) instead of training."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML config (data reading, split, device)."
    ),
    seed: int = typer.Option(0, help="Seed of the generator's training and of the sampled images."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted generator training in --out."
    ),
    classifier: Path | None = typer.Option(
        None, help="A model bundle trained on your images: the report's KID/FID use its features."
    ),
    inception: Path | None = typer.Option(
        None, help="Local Inception-v3 weights file: the report adds KID/FID on its features (no download)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Synthesise images of rare classes from a generator trained on the training partition only."""
    from lablens.workflows.synthesize import synthesize as run_synthesize

    res = run_synthesize(
        data,
        out,
        [c.strip() for c in classes.split(",") if c.strip()],
        n,
        method=method,
        config=build_config(config, {}),
        split=split,
        generator=generator,
        image_size=image_size,
        epochs=epochs,
        seed=seed,
        resume=resume,
        classifier=classifier,
        inception=inception,
        progress=not quiet,
    )
    counts = ", ".join(f"{c} {k}" for c, k in res.counts.items())
    console.print(
        f"{counts} synthetic images → {res.out} (generator {res.generator_hash[:16]}; report {res.out / 'report.html'})",
        highlight=False,
    )


#: ``lablens synth-study``'s options → the config keys they set
SYNTH_STUDY_OPTIONS = {
    "model": "model.name",
    "weights": "model.weights",
    "model_size": "model.image_size",
    "epochs": "train.epochs",
    "split": "split.protocol",
    "device": "train.device",
    "threads": "train.threads",
    "seed": "train.seed",
}


@app.command("synth-study")
@friendly
def synth_study(
    data: Path = typer.Argument(..., help="Labelled image folder or CSV."),
    classes: str = typer.Option(..., help="Comma-separated rare classes, e.g. gbi."),
    out: Path = typer.Option(..., "--out", "-o", help="New folder for the study."),
    methods: str = typer.Option("gan,diffusion", help="Generators to compare (gan, diffusion)."),
    ratios: str = typer.Option("1,2", help="Synthetic images per real training image of a rare class."),
    seeds: int = typer.Option(3, min=1, help="Classifier training seeds per arm."),
    keep: int | None = typer.Option(
        None, help="Cut each rare class to this many training images (whole patients first)."
    ),
    image_size: int = typer.Option(32, help="Side at which images are read and generated (32, 64 …)."),
    gan_epochs: int | None = typer.Option(None, help="GAN training epochs (default 60)."),
    diffusion_epochs: int | None = typer.Option(None, help="Diffusion training epochs (default 40)."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML config; options below override it."
    ),
    model: str | None = typer.Option(None, help="Classifier of every arm (default efficientnet_lite0)."),
    weights: str | None = typer.Option(None, help="scratch | imagenet | weights file."),
    model_size: int | None = typer.Option(None, help="Classifier input side in pixels (default 64)."),
    epochs: int | None = typer.Option(None, help="Classifier epochs (default 10)."),
    split: str | None = typer.Option(None, help="Train:validation:test protocol (default 6:2:2)."),
    device: str | None = typer.Option(None, help="auto | cpu | cuda"),
    threads: int | None = typer.Option(None, help="CPU threads."),
    seed: int | None = typer.Option(None, help="Seed of the split, the generators and the first classifier."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Real-only vs real + synthetic (GAN, diffusion) at several ratios vs the best class-imbalance remedy."""
    from lablens.workflows.synth_study import STUDY_DEFAULTS, parse_list, parse_ratios
    from lablens.workflows.synth_study import synth_study as run_study

    values = locals()
    overrides = {key: values[option] for option, key in SYNTH_STUDY_OPTIONS.items()} | {"split.seed": seed}
    run_study(
        data, out, build_config(config, overrides, defaults=STUDY_DEFAULTS),
        classes=parse_list(classes), methods=parse_list(methods), ratios=parse_ratios(ratios), seeds=seeds,
        keep=keep, image_size=image_size, generator_epochs={"gan": gan_epochs, "diffusion": diffusion_epochs},
        progress=not quiet,
    )  # fmt: skip


@app.command("fit-verifier")
@friendly
def fit_verifier(
    ctx: typer.Context,
    fields: list[Path] = typer.Argument(
        ..., help="Annotated smear fields: images or folders, or one CSV (path[,um_per_px])."
    ),
    truth: Path = typer.Option(
        ...,
        help="Folder of Pascal VOC .xml files named like the images, or a cells CSV (path,label,x0,y0,x1,y1).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="New .json file for the verifier (and its .yaml)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings (a verifier's .yaml)."),
    um_per_px: float | None = typer.Option(None, help="Field scale in µm per pixel (or a CSV column)."),
    holdout: float = typer.Option(0.2, help="Share of fields held out to measure rules vs verifier first."),
    not_wbc: str = typer.Option("rbc,platelet,platelets", help="Truth labels that are not white cells."),
    seed: int = typer.Option(0, help="Seed of the hold-out draw and of LightGBM."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Learn which nucleus candidates are white cells, and their outline, from your annotated fields."""
    from lablens.workflows.fit_verifier import FitVerifierConfig
    from lablens.workflows.fit_verifier import fit_verifier as run_fit

    cfg = verb_settings(ctx, FitVerifierConfig, config, locals(), FIT_VERIFIER_OPTIONS)
    run_fit(list(fields), truth, out, cfg, progress=not quiet)


HOME_OPTION = typer.Option(
    None,
    "--home",
    help="The installation's folder: database, images and audit key (default $LABLENS_HOME, else the per-user "
    "data folder, e.g. ~/.local/share/lablens).",
)
DB_OPTION = typer.Option(
    None, "--db", help="Database URL (default HOME/lablens.db; or postgresql+psycopg://user@host/db)."
)
STORAGE_OPTION = typer.Option(None, "--storage", help="Folder of the stored images (default HOME/images).")
KEY_OPTION = typer.Option(
    None, "--audit-key", help="Audit key file (default HOME/audit.key, created with the first audit row)."
)


@app.command()
@friendly
def serve(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML settings (e.g. the serve.yaml a start wrote); options override it."
    ),
    bundle: Path | None = typer.Option(
        None, help="Single-cell bundle that pre-classifies submitted cells of every task (or --registry)."
    ),
    registry: Path | None = typer.Option(
        None, help="Folder of bundles per task: REGISTRY/<task>/<name>/ (+ REGISTRY/<task>/quality/)."
    ),
    quality: Path | None = typer.Option(
        None, help="With --bundle: a quality (blur-level) bundle; cells above --max-level are not evaluable."
    ),
    max_level: float = typer.Option(2.5, help="Quality gate: highest score still evaluable."),
    ood: str = OOD_OPTION,
    home: Path | None = HOME_OPTION,
    db: str | None = DB_OPTION,
    storage: Path | None = STORAGE_OPTION,
    audit_key: Path | None = KEY_OPTION,
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    max_upload_mb: float = typer.Option(10.0, help="Largest accepted file in MiB."),
    max_request_mb: float = typer.Option(512.0, help="Largest request body in MiB (checked before reading)."),
    max_request_megapixels: float = typer.Option(
        1000.0, help="Decoded pixels one submission may hold in all, in millions."
    ),
    max_image_mb: float = typer.Option(512.0, help="Largest decoded size of one image in MiB."),
    min_confidence: float = typer.Option(
        0.5, help="Cells below this top probability go to the unidentified queue."
    ),
    one_person_lab: bool = typer.Option(
        False, "--one-person-lab", help="Lift the four-eyes rule: the submitter or sole reviewer may sign."
    ),
) -> None:
    """Run the review service (API + OpenAPI schema at /docs); manage users with `lablens users`."""
    from lablens.api import serve as run_serve
    from lablens.service.serve_config import ServeConfig

    run_serve(verb_settings(ctx, ServeConfig, config, locals(), SERVE_OPTIONS))


def _admin(home: Path | None, db: str | None, audit_key: Path | None, storage: Path | None = None) -> Any:
    from lablens.service.admin import ServiceAdmin

    return ServiceAdmin.open(home, db, storage, audit_key)


@app.command("add-user")
@friendly
def add_user(
    name: str = typer.Argument(..., help="User name (shown in the audit trail)."),
    role: str = typer.Option("technician", help="technician | reviewer | admin"),
    home: Path | None = HOME_OPTION,
    db: str | None = DB_OPTION,
    audit_key: Path | None = KEY_OPTION,
) -> None:
    """Create a user and print its API token (shown once; only its hash is stored)."""
    token = _admin(home, db, audit_key).add_user(name, role)
    console.print(f"user {name} ({role}) created; API token (store it now, it is not shown again):")
    typer.echo(token)


users_app = typer.Typer(help="List users, rotate or revoke their tokens, deactivate or activate accounts.")
app.add_typer(users_app, name="users")


@users_app.command("list")
@friendly
def users_list(
    home: Path | None = HOME_OPTION, db: str | None = DB_OPTION, audit_key: Path | None = KEY_OPTION
) -> None:
    """Every user with role, account state and whether a token is set."""
    for d in _admin(home, db, audit_key).users():
        state = "active" if d["active"] else "deactivated"
        typer.echo(
            f"{d['name']:20s} {d['role']:11s} {state:12s} token {'set' if d['has_token'] else 'revoked'}"
        )


@users_app.command("rotate-token")
@friendly
def users_rotate(
    name: str,
    home: Path | None = HOME_OPTION,
    db: str | None = DB_OPTION,
    audit_key: Path | None = KEY_OPTION,
) -> None:
    """Give NAME a new API token (printed once); the old one stops working."""
    token = _admin(home, db, audit_key).change_user(name, "rotate-token")
    console.print(f"new API token of {name} (store it now, it is not shown again):")
    typer.echo(token)


@users_app.command("revoke")
@friendly
def users_revoke(
    name: str,
    home: Path | None = HOME_OPTION,
    db: str | None = DB_OPTION,
    audit_key: Path | None = KEY_OPTION,
) -> None:
    """Revoke NAME's API token (the account stays; rotate-token gives a new one)."""
    _admin(home, db, audit_key).change_user(name, "revoke")
    console.print(f"the API token of {name} is revoked")


@users_app.command("deactivate")
@friendly
def users_deactivate(
    name: str,
    home: Path | None = HOME_OPTION,
    db: str | None = DB_OPTION,
    audit_key: Path | None = KEY_OPTION,
) -> None:
    """Deactivate NAME's account: nobody can sign in as NAME until it is activated."""
    _admin(home, db, audit_key).change_user(name, "deactivate")
    console.print(f"{name} is deactivated")


@users_app.command("activate")
@friendly
def users_activate(
    name: str,
    home: Path | None = HOME_OPTION,
    db: str | None = DB_OPTION,
    audit_key: Path | None = KEY_OPTION,
) -> None:
    """Activate NAME's account again."""
    _admin(home, db, audit_key).change_user(name, "activate")
    console.print(f"{name} is active")


audit_app = typer.Typer(
    help="Export the audit chain's head; verify the chain, an exported head and the records."
)
app.add_typer(audit_app, name="audit")


@audit_app.command("head")
@friendly
def audit_head(
    home: Path | None = HOME_OPTION, db: str | None = DB_OPTION, audit_key: Path | None = KEY_OPTION
) -> None:
    """Print the newest audit event's id and hash as JSON (keep it away from the server; verify against it)."""
    typer.echo(jsonio.dumps(_admin(home, db, audit_key).head()))


@audit_app.command("seal")
@friendly
def audit_seal(
    home: Path | None = HOME_OPTION, db: str | None = DB_OPTION, audit_key: Path | None = KEY_OPTION
) -> None:
    """Seal audit rows written before lablens keyed its chain (for a database upgraded without the key).

    Only do this for rows you trust: a chain rewritten as unkeyed rows would be sealed too.
    """
    sealed = _admin(home, db, audit_key).seal()
    console.print("unkeyed audit rows sealed" if sealed else "nothing to seal: the chain is keyed")


@audit_app.command("rotate-key")
@friendly
def audit_rotate_key(
    home: Path | None = HOME_OPTION, db: str | None = DB_OPTION, audit_key: Path | None = KEY_OPTION
) -> None:
    """Replace the audit key and re-seal the chain under the new one (stop the service first).

    The chain is verified with the current key, then a keyed event pins every row before it; the new key
    replaces the file, and the old key is no longer needed (nor useful to anyone who learnt it).
    """
    admin = _admin(home, db, audit_key)
    done = admin.rotate_key()
    verb = "finished the interrupted rotation" if done.get("finished_earlier_rotation") else "rotated"
    console.print(
        f"audit key {verb}: {admin.where.key_file} now holds key {done['key_id']}; event {done['event_id']} seals "
        "the chain under it (restart the service to use it; back the new key up)",
        highlight=False,
    )


@audit_app.command("verify")
@friendly
def audit_verify(
    home: Path | None = HOME_OPTION,
    db: str | None = DB_OPTION,
    audit_key: Path | None = KEY_OPTION,
    head: str | None = typer.Option(None, help="An exported head: its JSON, or a file holding it."),
) -> None:
    """Check the keyed chain, the exported head and the records against the events; exit 1 naming each problem."""
    admin = _admin(home, db, audit_key)
    result = admin.verify(head)
    if result.ok:
        console.print(f"audit ok: {result.events} events, chain intact, records match", highlight=False)
        return
    for problem in result.problems:
        console.print(f"[red]problem[/red] {problem['reason']}", highlight=False)
    if not result.key_signs_newest:
        console.print(
            f"note: {admin.where.key_file} does not verify the newest keyed event either: unless that event was "
            "changed too, this is not the key this database was written with (--audit-key names another)",
            highlight=False,
        )
    raise typer.Exit(1)


@app.command("export-reviews")
@friendly
def export_reviews(
    out: Path = typer.Option(..., "--out", "-o", help="New folder: <label>/<sha256>.png + manifest.csv."),
    home: Path | None = HOME_OPTION,
    db: str | None = DB_OPTION,
    storage: Path | None = STORAGE_OPTION,
    include_unsigned: bool = typer.Option(False, help="Also samples not signed off yet."),
) -> None:
    """Write the technicians' labels as a training set (path,label,group = sample) for `lablens train`."""
    manifest = _admin(home, db, None, storage).export_reviews(out, include_unsigned)
    changed = int((manifest["status"] == "reclassified").sum())
    console.print(
        f"{len(manifest)} reviewed cells ({changed} reclassified) from {manifest['group'].nunique()} samples → {out}",
        highlight=False,
    )


@app.command("validate-data")
@friendly
def validate_data(
    data: Path = typer.Argument(..., help="Image folder or CSV."),
    config: Path | None = typer.Option(None, "--config", "-c"),
    group_column: str | None = typer.Option(None),
    group_regex: str | None = typer.Option(None),
    reader_column: str | None = typer.Option(None),
    split: str | None = typer.Option(
        None, help="Protocol the data must support (sets the minimum groups per class)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report as JSON here."),
) -> None:
    """Check a dataset and print what would be used and what is skipped (file and reason). Trains nothing."""
    from lablens.progress import make_progress
    from lablens.workflows.printing import print_data_report
    from lablens.workflows.reading import read_data
    from lablens.workflows.train import min_groups_for

    cfg = build_config(
        config,
        {
            "data.group_column": group_column,
            "data.group_regex": group_regex,
            "data.reader_column": reader_column,
            "split.protocol": split,
        },
    )
    with make_progress(sys.stderr.isatty()) as prog:
        _, report = read_data(data, cfg.data, prog, min_groups_per_class=min_groups_for(cfg.split.protocol))
    print_data_report(report, max_lines=10_000)
    if json_out:
        if json_out.exists():
            raise OutputExistsError(f"{json_out} exists; not overwritten")
        jsonio.write_json(json_out, report.to_dict())


@app.command()
@friendly
def demo(
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for the demo (default HOME/demo, e.g. ~/.local/share/lablens/demo; never reused).",
    ),
    task: str = typer.Option("blood-cells", help="Phantom task (`lablens phantom list`)."),
    n: int = typer.Option(800, help="Number of synthetic images."),
    epochs: int = typer.Option(8, help="Training epochs."),
    image_size: int = typer.Option(64, help="Input size in pixels."),
    model: str = typer.Option("efficientnet_lite0", help="Model name."),
    weights: str = typer.Option("imagenet", help="scratch | imagenet | path."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Run the whole flow on built-in synthetic data and print where the report is."""
    from lablens.workflows.demo import demo as run_demo

    run_demo(
        out,
        task=task,
        n=n,
        epochs=epochs,
        image_size=image_size,
        model=model,
        weights=weights,
        progress=not quiet,
    )


@app.command()
@friendly
def phantom(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Phantom task (see `lablens phantom list`), or `list`."),
    out: Path | None = typer.Argument(None, help="New or empty output folder."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings (a phantom.yaml)."),
    n: int = typer.Option(400, "--n", "-n", help="Number of images (or fields)."),
    seed: int = typer.Option(0, help="Master seed: the same arguments give byte-identical files."),
    size: int | None = typer.Option(None, help="Image side in pixels (default: the task's)."),
    groups: int | None = typer.Option(
        None, help="Synthetic patients/slides (default: ~25 images each; ~10 where a patient has one class)."
    ),
    blur: str = typer.Option("0", help="Extra defocus levels, e.g. 0-4 or 0,2,4 (level L: sigma L*size/96)."),
    fields: bool = typer.Option(False, "--fields", help="Whole fields with boxes and masks of every object."),
    montage: bool = typer.Option(
        False, "--montage", help="Write a labelled contact sheet to OUT (a .png) instead of a dataset."
    ),
) -> None:
    """Write synthetic phantoms with known truth: ImageFolder tree + manifest.csv (+ cells.csv, COCO json)."""
    from lablens.workflows.phantom import PhantomConfig, phantom_list
    from lablens.workflows.phantom import phantom as run_phantom

    if task == "list":
        typer.echo("\n".join(phantom_list()))
        return
    done = run_phantom(task, out, verb_settings(ctx, PhantomConfig, config, locals()))
    console.print(done, highlight=False)


@app.command()
@friendly
def models() -> None:
    """List registered model names (any other timm model name works too)."""
    from lablens.models.registry import list_estimators

    for name in list_estimators():
        typer.echo(name)


@app.command("show-config")
@friendly
def show_config(
    config: Path | None = typer.Argument(None, help="YAML file to resolve (defaults if omitted)."),
) -> None:
    """Print the fully resolved configuration (defaults filled in)."""
    import yaml

    cfg: RunConfig = build_config(config)
    typer.echo(yaml.safe_dump(cfg.model_dump(), sort_keys=False))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
