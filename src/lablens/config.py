"""Typed run configuration: YAML → these pydantic models → factories with explicit arguments.

Config flows one way. The CLI merges its options into a :class:`RunConfig` (``apply_overrides``), the
resolved config is written next to every run's outputs (``config.yaml``), and everything below the CLI
receives plain, explicit arguments taken from these models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lablens.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

# The default schedule (TrainingSettings): 8 epochs of at least 300 optimiser steps in all. Chosen for time to
# accuracy on a CPU: fine-tuning an ImageNet network on ~1,000 cells plateaus on validation by epoch 7–8 of a
# warm-up + cosine schedule (PBC, 2 CPU cores, 2026-12-07); 20 epochs cost 2.5× the time for no gain.
DEFAULT_EPOCHS = 8
DEFAULT_MIN_STEPS = 300


class StrictModel(BaseModel):
    """Typed settings that refuse unknown keys (naming them) and check values on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(StrictModel):
    """Where the labelled images are and how to read them."""

    path: str | None = None
    layout: Literal["auto", "folder", "csv"] = "auto"
    path_column: str = "path"
    label_column: str = "label"
    group_column: str | None = None
    group_regex: str | None = None
    reader_column: str | None = None
    min_side: int = Field(16, ge=1)
    max_pixels: int = Field(60_000_000, ge=1)
    resize_mode: Literal["pad", "squash", "crop"] = "pad"
    cache_dir: str | None = None
    # synthetic images (a folder with manifest.csv, synthetic=1) that join each training partition, never
    # validation or test; ``synthetic_ratio`` caps a class's synthetic images at that multiple of its real ones
    synthetic: str | None = None
    synthetic_ratio: float | None = Field(None, gt=0.0)


class SplitConfig(StrictModel):
    """How images are divided. ``protocol`` grammar: ``8:1:1`` (train:val:test), ``9:1`` (train:test,
    validation carved from train by ``val_fraction``), ``kfold:5``, ``repeated-kfold:5x3``, or a path to a
    saved ``split.json``."""

    protocol: str = "8:1:1"
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    seed: int = 0
    # a class without images in a partition: refuse the split (naming the class and its groups), drop
    # classes with too few groups before splitting, or keep it and report its metrics as not estimable
    missing_classes: Literal["refuse", "drop", "not-estimable"] = "refuse"


class AugmentConfig(StrictModel):
    """On-device microscopy augmentation, label-preserving by design: orientation (flips, 90° and free rotation),
    small zoom/shift, stain and lamp variation, and mild defocus. ``rotate`` is the largest free rotation
    in degrees (0 turns it off), ``scale`` and ``translate`` are fractions of the image size."""

    flips: bool = True
    rot90: bool = True
    rotate: float = Field(180.0, ge=0.0, le=180.0)
    scale: float = Field(0.10, ge=0.0, le=0.5)
    translate: float = Field(0.05, ge=0.0, le=0.3)
    brightness: float = Field(0.10, ge=0.0, le=1.0)
    contrast: float = Field(0.10, ge=0.0, le=1.0)
    saturation: float = Field(0.10, ge=0.0, le=1.0)
    channel_gain: float = Field(0.03, ge=0.0, le=0.5)
    blur_prob: float = Field(0.2, ge=0.0, le=1.0)
    blur_sigma_max: float = Field(1.0, ge=0.0, le=5.0)


class NetworkSettings(StrictModel):
    """The network a deep family builds: initial ``weights`` (scratch, imagenet or a file), input ``image_size``,
    dropout before the classifier, and test-time augmentation: ``tta`` averages predictions over the 8
    flips/rotations of an image; with ``tta_margin`` (adaptive TTA) each image is first seen once and only an
    image whose top-1 minus top-2 softmax probability is below the margin gets all 8 views (``null``: every
    image gets 8 views, 8× the inference cost). Validation during training uses the same policy.

    ``init``: a lablens bundle to start from instead of ``weights`` (a warm start: its network and normalisation,
    head rows kept for the classes it knows; see :mod:`lablens.models.warm_start`)."""

    weights: str = "scratch"
    init: str | None = None
    image_size: int = Field(224, ge=16, le=2048)
    drop_rate: float = Field(0.2, ge=0.0, lt=1.0)
    tta: bool = True
    tta_margin: float | None = Field(0.5, gt=0.0, le=1.0)


class ModelConfig(NetworkSettings):
    """Which estimator (``name``: registered or any timm model name), and ``params`` that only one model family
    takes (e.g. ``features``/``classifier`` of ``features``, ``deblur_weight`` of ``multitask``)."""

    name: str = "resnet18"
    params: dict[str, Any] = {}


class TrainingSettings(StrictModel):
    """How a network is trained: the settings of the one training engine (:mod:`lablens.train.trainer`) and
    of the classification loss. Every deep model family takes all of them as hyper-parameters.

    ``augment: null`` switches augmentation off. ``compile`` runs the training network through
    ``torch.compile``; batches always have one static shape (``drop_last`` leaves out the last, partial pass
    instead of filling it from the start of the epoch). ``grad_clip`` caps the global gradient norm.

    The schedule is counted in optimiser steps as well as epochs: training runs ``epochs`` epochs of at least
    ``min_steps`` steps in all; an epoch that would be too short takes several passes over the training images
    (a 32-image set gets as many updates as it needs, a large one is unaffected). Neither given: 8 epochs and
    at least 300 steps; ``epochs`` given alone: exactly that many passes (``min_steps`` 0).

    ``frozen_stages``: the stem and the first N stages of the backbone keep their starting weights (timm's
    coarse parameter groups). A speed option for CPUs: at 2, EfficientNet-Lite0 trains ~45 % faster (no weight
    gradients for the largest feature maps), at some cost in accuracy (PBC, 128 px, 2026-12-07: validation
    macro-F1 0.969 vs 0.981), so the default is 0. Above 0 needs pretrained weights (``model.weights`` or
    ``model.init``): frozen random weights learn nothing."""

    epochs: int | None = Field(None, ge=1)
    min_steps: int | None = Field(None, ge=0)
    batch_size: int = Field(32, ge=1)
    lr: float | None = Field(None, gt=0.0)
    weight_decay: float = Field(0.05, ge=0.0)
    warmup_epochs: float = Field(1.0, ge=0.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    imbalance: Literal["none", "weighted", "sampler", "focal"] = "weighted"
    focal_gamma: float = Field(2.0, ge=0.0)
    ema: bool = True
    ema_decay: float = Field(0.999, gt=0.0, lt=1.0)
    monitor: Literal["macro_f1", "accuracy", "balanced_accuracy", "loss"] = "macro_f1"
    patience: int | None = Field(8, ge=1)
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    grad_clip: float | None = Field(None, gt=0.0)
    drop_last: bool = False
    frozen_stages: int = Field(0, ge=0)
    seed: int = 0
    augment: AugmentConfig | None = AugmentConfig()

    @property
    def epoch_count(self) -> int:
        """The epochs the schedule runs (``epochs``, or the default 8)."""
        return self.epochs if self.epochs is not None else DEFAULT_EPOCHS

    @property
    def step_floor(self) -> int:
        """The fewest optimiser steps the schedule runs (``min_steps``, or its default; 0 when only
        ``epochs`` was given)."""
        if self.min_steps is not None:
            return self.min_steps
        return DEFAULT_MIN_STEPS if self.epochs is None else 0


class TrainConfig(TrainingSettings):
    """Training settings plus where the run happens: ``device`` (auto, cpu, cuda), CPU ``threads``, and
    ``nproc`` data-parallel processes on this machine (torchrun; one per GPU, or gloo on CPUs)."""

    device: str = "auto"
    threads: int | None = Field(None, ge=1)
    nproc: int = Field(1, ge=1)


class EvalConfig(StrictModel):
    """Evaluation: bootstrap confidence intervals, top-k, calibration."""

    bootstrap: int = Field(1000, ge=0)
    level: float = Field(0.95, gt=0.5, lt=1.0)
    top_k: list[int] = [2, 3]
    calibrate: bool = True
    ece_bins: int = Field(15, ge=2)
    batch_size: int = Field(64, ge=1)

    @field_validator("top_k")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError("top_k values must be ≥ 1")
        return sorted(set(v))


class CompareConfig(StrictModel):
    """``lablens compare``: which methods, on which folds, ranked by which metric.

    Folds are grouped and stratified: ``folds``-fold cross-validation repeated ``repeats`` times, or, when
    ``holdout`` is set (e.g. ``70:30``), that hold-out split drawn ``repeats`` times with different seeds.
    ``split.val_fraction`` of each training part is carved off for the deep models' model selection (the
    classical models train on it too). ``model``/``train`` settle image size and fine-tuning settings."""

    methods: list[str] = []
    folds: int = Field(5, ge=2)
    repeats: int = Field(1, ge=1)
    holdout: str | None = None
    primary_metric: Literal[
        "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "mcc", "kappa", "macro_auc"
    ] = "macro_f1"
    search: bool = False
    search_folds: int = Field(3, ge=2)
    save_winner: bool = False


class RunConfig(StrictModel):
    """Everything a ``lablens train`` (or ``compare``) run needs; written back as ``config.yaml`` in the run
    folder."""

    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    compare: CompareConfig = CompareConfig()


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file (a ConfigError naming the file if it cannot be read)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping at top level")
    return raw


def load_config(path: str | Path | None) -> RunConfig:
    """Read a YAML config (missing keys take defaults; unknown keys are an error naming them)."""
    return RunConfig() if path is None else validated(RunConfig, read_config_file(path), where=str(path))


def build_config(
    config: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    defaults: dict[str, Any] | None = None,
    preset: dict[str, Any] | None = None,
) -> RunConfig:
    """The one way every command makes its configuration, in layers, each over the one before:
    lablens defaults → the command's ``defaults`` → a study ``preset`` → the ``config`` file → ``overrides``
    (command-line options; None values are not given). Unknown keys fail naming them."""
    raw = apply_overrides(RunConfig(), defaults or {}).model_dump()
    for layer in (preset, read_config_file(config) if config is not None else None):
        if layer:
            raw = deep_merge(raw, layer)
    return apply_overrides(validated(RunConfig, raw, where=str(config or "the configuration")), overrides or {})


def validated(model: type[M], raw: dict[str, Any], where: str) -> M:
    """``model.model_validate(raw)``, its errors as one ConfigError naming ``where`` and each setting."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {describe_validation(exc)}") from None


def describe_validation(exc: ValidationError) -> str:
    """One clause per problem of a pydantic error, naming the dotted setting."""
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "?"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown setting {name!r}")
        elif err["type"] == "value_error":  # a validator's own message, without pydantic's "Value error, "
            parts.append(f"{name}: {err['ctx']['error']}")
        else:
            parts.append(f"{name}: {err['msg']}")
    return "; ".join(parts)


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, recursing into nested mappings (lists are replaced, not joined)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return a copy with dotted-key overrides applied, e.g. ``{"train.epochs": 5}``; None values are skipped."""
    data = cfg.model_dump()
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"unknown config key {key!r}")
            node = node[p]
        if leaf not in node:
            raise ConfigError(f"unknown config key {key!r}")
        node[leaf] = value
    return validated(RunConfig, data, where="the command-line options")


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False), encoding="utf-8")
