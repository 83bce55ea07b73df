"""Reading a run's data with progress: validated manifests, synthetic images, pixels, splits, and what is left
out (unreadable files, images a model was trained on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lablens.config import DataConfig, RunConfig
from lablens.data.cache import load_pixels
from lablens.data.io import DecodeLimits
from lablens.data.manifest import Manifest
from lablens.data.splits import Split, SplitError, make_split
from lablens.data.synthetic import (
    SyntheticError,
    SyntheticJoin,
    SyntheticSet,
    check_synthetic_table,
    read_sources,
)
from lablens.data.tables import TableError, read_text_csv
from lablens.data.validate import DataReport, Problem, load_dataset
from lablens.errors import RunError

SEEN = "seen_in_training"  # an image left out of an evaluation because the model trained or validated on it


def no_usable_image(skipped: list[Problem], shown: int = 3) -> str:
    """The one line for a run whose every input was unusable: how many, why, and the first few files."""
    kinds: dict[str, int] = {}
    for p in skipped:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    why = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in kinds.items())
    first = "; ".join(f"{p.path}: {p.reason}" for p in skipped[:shown])
    more = f"; … and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"no usable image: all {len(skipped)} input(s) were skipped ({why}) — {first}{more}"


def limits_from(data_cfg: DataConfig) -> DecodeLimits:
    return DecodeLimits(max_pixels=data_cfg.max_pixels, min_side=data_cfg.min_side)


def read_data(
    source: str | Path,
    data_cfg: DataConfig,
    progress: Any,
    *,
    min_groups_per_class: int = 1,
    known_classes: list[str] | None = None,
) -> tuple[Manifest, DataReport]:
    """Load and validate a dataset with a progress bar; print the problems found."""
    task = progress.task("checking images", 1)
    manifest, report = load_dataset(
        source,
        layout=data_cfg.layout,
        path_column=data_cfg.path_column,
        label_column=data_cfg.label_column,
        group_column=data_cfg.group_column,
        group_regex=data_cfg.group_regex,
        reader_column=data_cfg.reader_column,
        limits=limits_from(data_cfg),
        min_groups_per_class=min_groups_per_class,
        known_classes=known_classes,
        on_progress=task.callback,
    )
    task.done()
    return manifest, report


def synthetic_join(cfg: RunConfig, manifest: Manifest, progress: Any) -> SyntheticJoin | None:
    """The run's synthetic images (``data.synthetic``) decoded at the model's size, ready to join each fold's
    training partition; ``None`` when the run has none."""
    if not cfg.data.synthetic:
        return None
    syn = read_synthetic(cfg.data.synthetic, cfg.data, progress, manifest.classes)
    pixels = read_pixels(syn.manifest, cfg.model.image_size, cfg.data, progress)
    return SyntheticJoin(syn, pixels, manifest, cfg.data.synthetic_ratio, cfg.split.seed)


def read_synthetic(path: str | Path, data_cfg: DataConfig, progress: Any, classes: list[str]) -> SyntheticSet:
    """A synthetic set checked against the real data's ``classes`` (see :mod:`lablens.data.synthetic`); its
    images pass the same decoding checks as real ones, and what was skipped is said."""
    try:
        table = check_synthetic_table(path, classes)
        raw = read_text_csv(table)
    except (SyntheticError, TableError) as exc:
        raise RunError(str(exc)) from None
    plain = data_cfg.model_copy(
        update={"layout": "csv", "path_column": "path", "label_column": "label", "group_column": None,
                "group_regex": None, "reader_column": None}
    )  # fmt: skip
    manifest, report = read_data(table, plain, progress, known_classes=classes)
    for p in report.problems:
        progress.log(f"synthetic: skipped {p.path}: {p.reason}")
    generators = sorted(set(raw["generator"])) if "generator" in raw.columns else []
    syn = SyntheticSet(manifest, generators, read_sources(Path(table).parent))
    if syn.note:
        progress.log(f"note: {syn.note}")
    return syn


def seen_prefixes(bundle: Any) -> set[str]:
    """sha256 prefixes of the images a bundle was trained or validated on (recorded in its card)."""
    return set((bundle.card.get("training") or {}).get("seen_sha256_prefixes") or [])


def drop_seen(
    manifest: Manifest, report: DataReport, seen: set[str], data: str | Path, include_seen: bool
) -> Manifest:
    """``manifest`` without the images in ``seen`` (each reported as ``seen_in_training``), unless
    ``include_seen``; refuses when nothing is left."""
    if not seen or include_seen:
        return manifest
    prefix_len = len(next(iter(seen)))
    is_seen = manifest.table["sha256"].str[:prefix_len].isin(seen).to_numpy()
    for rid in manifest.table["id"][is_seen]:
        report.problems.append(
            Problem(
                rid,
                SEEN,
                "used to train or validate this model (use --include-seen to score it)",
            )
        )
    if is_seen.all():
        raise RunError(
            f"every image in {data} was used to train or validate this model; nothing left to evaluate "
            "(use --include-seen to score them anyway)"
        )
    manifest = manifest.subset(np.flatnonzero(~is_seen))
    report.n_usable = len(manifest)
    report.class_counts = manifest.class_counts()
    return manifest


def read_pixels(manifest: Manifest, size: int, data_cfg: DataConfig, progress: Any) -> np.ndarray:
    task = progress.task(f"decoding to {size}px cache", len(manifest))
    pixels = load_pixels(
        manifest.paths,
        manifest.table["sha256"].tolist(),
        size,
        data_cfg.resize_mode,
        cache_dir=data_cfg.cache_dir,
        limits=limits_from(data_cfg),
        on_progress=task.callback,
    )
    task.done()
    return pixels


def split_from_config(cfg: RunConfig, manifest: Manifest) -> Split:
    """The split ``lablens train`` makes of ``manifest`` with ``cfg.split``; a split that cannot be made is a
    one-line :class:`RunError`."""
    try:
        return make_split(
            manifest.y, np.asarray(manifest.groups).astype(str), cfg.split.protocol,
            val_fraction=cfg.split.val_fraction, seed=cfg.split.seed, classes=manifest.classes,
            missing_classes=cfg.split.missing_classes,
        )  # fmt: skip
    except SplitError as exc:
        raise RunError(f"split: {exc}") from None


def check_classes(classes: list[str], manifest: Manifest, data: str | Path) -> None:
    """A one-line :class:`RunError` for the first of ``classes`` that ``data`` does not have."""
    unknown = [c for c in classes if c not in manifest.classes]
    if unknown:
        raise RunError(f"--classes: {unknown[0]!r} is not a class of {data} ({', '.join(manifest.classes)})")
