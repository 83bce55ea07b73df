"""``lablens synthesize``: synthetic images of rare classes from a generator trained on the training partition.

The split decides what the generator may see: the one of ``--split RUN/split.json`` (a run's), or the one
``lablens train`` would make with the same configuration (protocol and seed). The generator learns from the
training partition only — never validation or test images — and the output folder is a synthetic set that
``lablens train --synthetic`` reads::

    SYN/<class>/syn_00000.png    the images
    SYN/manifest.csv             path, label, synthetic=1, generator (bundle hash), seed, source_classes
    SYN/sources.csv              sha256 of every real image the generator learned from
    SYN/generator/               the generator bundle (reuse it with --generator)
    SYN/quality.json             KID/FID and memorisation flags per class (see lablens.synth.report)
    SYN/report.html              the same, with the flagged pairs and montages of real vs synthetic images
    SYN/config.yaml              the resolved configuration
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from lablens.config import DataConfig, RunConfig
from lablens.data.manifest import Manifest
from lablens.data.splits import SplitError, load_split
from lablens.data.synthetic import MANIFEST, SOURCES
from lablens.errors import RunError
from lablens.infer.bundle import BundleError, load_bundle
from lablens.jsonio import write_json
from lablens.progress import make_progress
from lablens.synth.base import ImageGenerator
from lablens.synth.features import Features, classifier_features, imagenet_features, inception_features
from lablens.synth.registry import create_generator, list_generators, load_generator
from lablens.synth.report import quality_document, write_report
from lablens.train.context import FitContext
from lablens.workflows.reading import check_classes, read_data, read_pixels, split_from_config
from lablens.workflows.run_folder import run_folder

GENERATOR = "generator"
QUALITY = "quality.json"
#: fewest training images of a requested class a generator is trained for
MIN_IMAGES = 10


@dataclass
class SynthesisResult:
    out: Path
    generator: Path
    generator_hash: str
    counts: dict[str, int]


def synthesize(
    data: str | Path,
    out: str | Path,
    classes: list[str],
    n: int,
    *,
    method: str = "gan",
    config: RunConfig | None = None,
    split: str | Path | None = None,
    generator: str | Path | None = None,
    image_size: int = 64,
    epochs: int | None = None,
    seed: int = 0,
    resume: bool = False,
    classifier: str | Path | None = None,
    inception: str | Path | None = None,
    progress: bool = True,
) -> SynthesisResult:
    """Train (or load) a generator on ``data``'s training partition and write ``n`` images per class.

    ``method`` is a registered generator family (``gan``, ``diffusion``); ``epochs`` None keeps its default.
    The quality report compares the images with the real training images of their class on the features of
    ``classifier`` (a model bundle trained on the lab's images; ImageNet features without one) and of Inception
    when a local ``inception`` weights file is given.
    """
    _check_request(method, n)
    features, notes = quality_features(image_size, classifier, inception)  # a bad path fails before training
    cfg = (config or RunConfig()).model_copy(deep=True)
    out = Path(out)
    with make_progress(progress) as prog:
        part = _read_partition(data, classes, cfg, split, prog)
        if resume and not (out / "checkpoints").exists():
            raise RunError(f"cannot resume: {out} holds no generator checkpoints")
        folder = (
            nullcontext(out) if resume else run_folder(out, cfg, keep=lambda p: (p / "checkpoints").exists())
        )
        with folder as out:
            if generator is not None:
                est, digest = _reuse_generator(generator, out)
            else:
                context = FitContext(
                    progress=prog, checkpoint_dir=out / "checkpoints", resume=resume, device=cfg.train.device
                )
                fit = GeneratorFit(method, image_size, epochs, seed)
                est, digest = _train_generator(out, fit, part, str(data), cfg.data, context)
            images = write_images(out, est, classes, n, seed, digest)
            real = _real_images(part, classes, est.image_size, cfg.data, prog)
            info = {"method": est.name, "generator": digest, "data": str(data), "image_size": est.image_size}
            title = f"{est.name} generator {digest[:16]} · {data} · {est.image_size} px"
            write_quality(out, real, images, features, seed, info, title, notes)
    return SynthesisResult(out, out / GENERATOR, digest, {c: len(v) for c, v in images.items()})


def _check_request(method: str, n: int) -> None:
    """Refuse an unknown generator family, or fewer than one image per class, before any work."""
    if method not in list_generators():
        raise RunError(f"--method {method!r}: choose {' | '.join(list_generators())}")
    if n < 1:
        raise RunError("--n must be at least 1")


@dataclass(frozen=True)
class TrainingPartition:
    """The training partition a generator learns from: the dataset's manifest, the training rows of it, and
    their labels and groups."""

    manifest: Manifest
    rows: np.ndarray
    labels: np.ndarray
    groups: np.ndarray


def _read_partition(
    data: str | Path, classes: list[str], cfg: RunConfig, split: str | Path | None, progress: Any
) -> TrainingPartition:
    """Read ``data`` and take its training partition; refuse an unknown class or one with too few images."""
    manifest, _ = read_data(data, cfg.data, progress)
    check_classes(classes, manifest, data)
    groups = np.asarray(manifest.groups).astype(str)
    rows = _training_rows(manifest, groups, cfg, split)
    labels = manifest.table["label"].to_numpy()[rows]
    check_training_counts({c: int((labels == c).sum()) for c in classes})
    return TrainingPartition(manifest, rows, labels, groups[rows])


def _training_rows(
    manifest: Manifest, groups: np.ndarray, cfg: RunConfig, split: str | Path | None
) -> np.ndarray:
    """The rows of the one training partition a generator may learn from: of ``split`` (a ``split.json``) when
    given, else of the split ``lablens train`` makes with ``cfg``."""
    if split is not None:
        try:
            parts, _ = load_split(split, manifest.ids, groups)
        except SplitError as exc:
            raise RunError(f"split: {exc}") from None
    else:
        parts = split_from_config(cfg, manifest)
    if len(parts.folds) != 1:
        raise RunError(
            f"split {parts.protocol}: a generator learns from one training partition; give a hold-out split "
            "(e.g. 8:1:1) or one fold's split.json"
        )
    return np.asarray(parts.folds[0].train)


def check_training_counts(counts: dict[str, int]) -> None:
    """Refuse the first class of ``counts`` (class → training images) with fewer than :data:`MIN_IMAGES`."""
    for c, have in counts.items():
        if have < MIN_IMAGES:
            raise RunError(
                f"--classes: {c!r} has {have} training image(s); a generator needs at least {MIN_IMAGES}"
            )


def _reuse_generator(generator: str | Path, out: Path) -> tuple[ImageGenerator, str]:
    """Load the generator bundle ``generator`` and copy it (with the ``sources.csv`` beside it, if any) into
    ``out``; return it and its bundle hash."""
    try:
        est, digest = load_generator(generator)
    except BundleError as exc:
        raise RunError(f"--generator {exc}") from None
    shutil.copytree(generator, out / GENERATOR)
    src = Path(generator) / SOURCES
    if src.is_file():
        shutil.copyfile(src, out / SOURCES)
    return est, digest


@dataclass(frozen=True)
class GeneratorFit:
    """A new generator: its family, image size, epochs (None keeps the family's default) and seed."""

    method: str
    image_size: int
    epochs: int | None
    seed: int


def _train_generator(
    out: Path,
    fit: GeneratorFit,
    part: TrainingPartition,
    data: str,
    data_cfg: DataConfig,
    context: FitContext,
) -> tuple[ImageGenerator, str]:
    """Train a generator on the training partition of ``data`` (checkpoints in ``context``, removed once it is
    saved) and save it as ``out/generator/``; return it and its bundle hash."""
    pixels = read_pixels(part.manifest.subset(part.rows), fit.image_size, data_cfg, context.progress)
    params = {"image_size": fit.image_size, "seed": fit.seed}
    est = create_generator(fit.method, **params, **({"epochs": fit.epochs} if fit.epochs else {}))
    est.fit(pixels, part.labels, groups=part.groups, context=context)
    training = {"data": data, "n_images": len(part.rows)}
    digest = save_generator(out, est, part.manifest.table["sha256"].iloc[part.rows], training)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return est, digest


def _real_images(
    part: TrainingPartition, classes: list[str], size: int, data_cfg: DataConfig, progress: Any
) -> dict[str, np.ndarray]:
    """The real training images of each of ``classes``, decoded at ``size``."""
    rows = part.rows[np.isin(part.labels, classes)]
    pixels = read_pixels(part.manifest.subset(rows), size, data_cfg, progress)
    labels = part.manifest.table["label"].to_numpy()[rows]
    return {c: pixels[labels == c] for c in classes}


def write_quality(
    out: Path,
    real: dict[str, np.ndarray],
    images: dict[str, np.ndarray],
    features: dict[str, Features],
    seed: int,
    info: dict[str, Any],
    title: str,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Compare synthetic ``images`` with the ``real`` ones of their class on ``features``; write the document
    (``info`` added: method, generator, data, image size) as ``out/quality.json`` and ``out/report.html``;
    return it."""
    doc = quality_document(real, images, features, seed=seed)
    doc.update(info)
    write_json(out / QUALITY, doc)
    write_report(out, doc, real, images, title=title, notes=notes)
    return doc


def quality_features(
    image_size: int, classifier: str | Path | None = None, inception: str | Path | None = None
) -> tuple[dict[str, Features], list[str]]:
    """The feature sets of the quality report (name → extractor) and notes on what they are."""
    features: dict[str, Features] = {}
    notes = []
    if classifier is not None:
        try:
            bundle = load_bundle(classifier)
            features[f"classifier {bundle.hash[:12]}"] = classifier_features(bundle.estimator)
        except (BundleError, ValueError) as exc:
            raise RunError(f"--classifier {exc}") from None
        notes.append(f"Features of the classifier {classifier} (trained on the lab's images).")
    else:
        features["imagenet"] = imagenet_features(image_size)
        notes.append(
            "Features: EfficientNet-Lite0 with ImageNet weights. Give --classifier RUN/bundle for features of a "
            "classifier trained on your own images (what matters for the task)."
        )
    if inception is not None:
        try:
            features["inception"] = inception_features(inception)
        except (FileNotFoundError, ValueError) as exc:
            raise RunError(str(exc)) from None
    return features, notes


def save_generator(out: Path, est: ImageGenerator, sources: pd.Series, training: dict) -> str:
    """Save a trained generator as ``out/generator/`` with the sha256 of every image it learned from
    (``sources.csv``, in the bundle and beside it); return the bundle hash."""
    digest = est.save(out / GENERATOR, training=training)
    table = pd.DataFrame({"sha256": np.asarray(sources)})
    table.to_csv(out / GENERATOR / SOURCES, index=False)
    table.to_csv(out / SOURCES, index=False)
    return digest


def write_images(
    out: Path, est: ImageGenerator, classes: list[str], n: int, seed: int, digest: str
) -> dict[str, np.ndarray]:
    """Sample ``n`` images of each class into ``out/<class>/`` with ``manifest.csv``; return them by class."""
    rows, images_by_class = [], {}
    for k, c in enumerate(classes):
        images = images_by_class[c] = est.sample([c] * n, seed=seed * 1000 + k)
        (out / c).mkdir(exist_ok=True)
        for i, img in enumerate(images):
            path = f"{c}/syn_{i:05d}.png"
            Image.fromarray(img).save(out / path)
            rows.append(
                {"path": path, "label": c, "synthetic": 1, "generator": digest[:16], "seed": seed,
                 "source_classes": "+".join(est.classes_)}
            )  # fmt: skip
    pd.DataFrame(rows).to_csv(out / MANIFEST, index=False)
    return images_by_class
