"""``lablens synthesize``: synthetic images of rare classes from a generator trained on the training partition.

The split decides what the generator may see: the one of ``--split RUN/split.json`` (a run's), or the one
``lablens train`` would make with the same configuration (protocol and seed). The generator learns from the
training partition only — never validation or test images — and the output folder is a synthetic set that
``lablens train --synthetic`` reads::

    SYN/<class>/syn_00000.png    the images
    SYN/manifest.csv             path, label, synthetic=1, generator (bundle hash), seed, source_classes
    SYN/sources.csv              sha256 of every real image the generator learned from
    SYN/generator/               the generator bundle (reuse it with --generator)
    SYN/config.yaml              the resolved configuration
"""

from __future__ import annotations

import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lablens.config import RunConfig
from lablens.data.splits import SplitError, load_split, make_split
from lablens.data.synthetic import MANIFEST, SOURCES
from lablens.infer.bundle import BundleError
from lablens.progress import make_progress
from lablens.synth.gan import GANGenerator
from lablens.train.context import FitContext
from lablens.workflows.common import RunError, read_data, read_pixels
from lablens.workflows.run_folder import run_folder

GENERATOR = "generator"
#: fewest training images of a requested class a generator is trained for
MIN_IMAGES = 10
METHODS = ("gan",)


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
    epochs: int = 60,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
) -> SynthesisResult:
    """Train (or load) a generator on ``data``'s training partition and write ``n`` images per class."""
    if method not in METHODS:
        raise RunError(f"--method {method!r}: choose {' | '.join(METHODS)} (diffusion is not built yet)")
    if n < 1:
        raise RunError("--n must be at least 1")
    cfg = (config or RunConfig()).model_copy(deep=True)
    out = Path(out)
    with make_progress(progress) as prog:
        manifest, _ = read_data(data, cfg.data, prog)
        unknown = [c for c in classes if c not in manifest.classes]
        if unknown:
            raise RunError(
                f"--classes: {unknown[0]!r} is not a class of {data} ({', '.join(manifest.classes)})"
            )
        groups = np.asarray(manifest.groups).astype(str)
        try:
            if split is not None:
                parts, _ = load_split(split, manifest.ids, groups)
            else:
                parts = make_split(
                    manifest.y, groups, cfg.split.protocol, val_fraction=cfg.split.val_fraction,
                    seed=cfg.split.seed, classes=manifest.classes, missing_classes=cfg.split.missing_classes,
                )  # fmt: skip
        except SplitError as exc:
            raise RunError(f"split: {exc}") from None
        if len(parts.folds) != 1:
            raise RunError(
                f"split {parts.protocol}: a generator learns from one training partition; give a hold-out split "
                "(e.g. 8:1:1) or one fold's split.json"
            )
        train_rows = np.asarray(parts.folds[0].train)
        labels = manifest.table["label"].to_numpy()[train_rows]
        for c in classes:
            have = int((labels == c).sum())
            if have < MIN_IMAGES:
                raise RunError(
                    f"--classes: {c!r} has {have} training image(s); a generator needs at least {MIN_IMAGES}"
                )
        if resume and not (out / "checkpoints").exists():
            raise RunError(f"cannot resume: {out} holds no generator checkpoints")
        folder = (
            nullcontext(out) if resume else run_folder(out, cfg, keep=lambda p: (p / "checkpoints").exists())
        )
        with folder as out:
            if generator is not None:
                try:
                    est, digest = GANGenerator.load(generator)
                except BundleError as exc:
                    raise RunError(f"--generator {exc}") from None
                shutil.copytree(generator, out / GENERATOR)
                src = Path(generator) / SOURCES
                if src.is_file():
                    shutil.copyfile(src, out / SOURCES)
            else:
                pixels = read_pixels(manifest.subset(train_rows), image_size, cfg.data, prog)
                est = GANGenerator(image_size=image_size, epochs=epochs, seed=seed)
                context = FitContext(
                    progress=prog, checkpoint_dir=out / "checkpoints", resume=resume, device=cfg.train.device
                )
                est.fit(pixels, labels, groups=groups[train_rows], context=context)
                sources = pd.DataFrame({"sha256": manifest.table["sha256"].iloc[train_rows].to_numpy()})
                digest = est.save(out / GENERATOR, training={"data": str(data), "n_images": len(train_rows)})
                sources.to_csv(out / GENERATOR / SOURCES, index=False)
                sources.to_csv(out / SOURCES, index=False)
                shutil.rmtree(out / "checkpoints", ignore_errors=True)
            counts = _write_images(out, est, classes, n, seed, digest)
    return SynthesisResult(out, out / GENERATOR, digest, counts)


def _write_images(
    out: Path, est: GANGenerator, classes: list[str], n: int, seed: int, digest: str
) -> dict[str, int]:
    rows = []
    for k, c in enumerate(classes):
        images = est.sample([c] * n, seed=seed * 1000 + k)
        (out / c).mkdir(exist_ok=True)
        for i, img in enumerate(images):
            path = f"{c}/syn_{i:05d}.png"
            Image.fromarray(img).save(out / path)
            rows.append(
                {"path": path, "label": c, "synthetic": 1, "generator": digest[:16], "seed": seed,
                 "source_classes": "+".join(est.classes_)}
            )  # fmt: skip
    pd.DataFrame(rows).to_csv(out / MANIFEST, index=False)
    return {c: n for c in classes}
