"""``lablens retrain RUN --reviews EXPORT… --out NEW``: the technicians' corrections become a candidate model.

The run's own resolved configuration is trained again on its original images plus the reviewed cells that
``lablens export-reviews`` wrote, with the partitions fixed as follows (written as ``NEW/split.json`` and used
through the ``split.protocol`` path rule of ``lablens train``):

- the run's original images keep their partitions: its **test partition stays locked** (never trained or
  validated on), its training and validation images stay where they were;
- reviewed cells join by **sample** (the export's ``group``), so a sample never straddles partitions. The most
  recent ``review_test`` share of samples (export order follows the review database, oldest first) is held
  out as **locked review cases** for ``lablens promote``; of the rest, ``split.val_fraction`` of the samples
  (seeded) validate and the others train;
- a reviewed cell whose label is not one of the model's classes, or whose image is already in the run's data,
  is left out and counted.

``NEW`` holds ``data.csv`` (every image with its source and partition), ``split.json``, ``locked_reviews.csv``
(the held-out review cases, labelled, for ``lablens promote --data``), ``retrain.json`` (what was joined and
left out), ``retrain.yaml`` (the settings, loadable with ``--config``) and ``run/``: the training run with the
candidate bundle (``run/bundle``). Retraining starts, by default, from the run's bundle (a warm start,
``model.init``: the model in service learns the corrections instead of starting over); ``start: run`` starts
from the run's own initialisation (its ``model.weights``) instead, so the candidate differs from the model in
service only by the data. ``epochs`` may be changed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from lablens.config import RunConfig, load_config
from lablens.data.splits import SPLIT_SCHEMA
from lablens.errors import RunError
from lablens.infer.bundle import load_bundle
from lablens.jsonio import write_json
from lablens.models.registry import get_spec
from lablens.progress import console
from lablens.verb_config import VerbConfig
from lablens.workflows.run_folder import run_folder
from lablens.workflows.train import TrainResult, train

REVIEW_GROUP = "reviews/"  # prefix of review samples' groups: they never collide with the run's own groups


@dataclass
class RetrainResult:
    """The retrain folder, the candidate bundle and the locked review cases."""

    out: Path
    bundle: Path
    locked_reviews: Path
    summary: dict[str, Any]
    train: TrainResult


def _run_partitions(run: Path) -> pd.DataFrame:
    """The run's images (absolute path, label, group, sha256) with the partition its split gave each."""
    for name in ("config.yaml", "manifest.csv", "split.json", "bundle/card.json"):
        if not (run / name).is_file():
            raise RunError(f"{run} is not a finished lablens train run: {name} is missing")
    split = json.loads((run / "split.json").read_text(encoding="utf-8"))
    if len(split.get("folds") or []) != 1:
        raise RunError(
            f"{run} was trained on {len(split.get('folds') or [])} folds; retrain takes a run with one "
            "train/validation/test split (its test partition is what stays locked)"
        )
    table = pd.read_csv(run / "manifest.csv", dtype=str, keep_default_na=False)
    part = {i: side for side in ("train", "val", "test") for i in split["folds"][0].get(side, [])}
    table["partition"] = table["id"].map(part)
    table = table[table["partition"].notna()]  # classes the split dropped stay out
    group = table["group"] if "group" in table else table["id"]
    return pd.DataFrame(
        {
            "path": table["path"],
            "label": table["label"],
            "group": group,
            "sha256": table["sha256"],
            "source": "original",
            "partition": table["partition"],
        }
    )


def _read_reviews(
    exports: list[Path], classes: list[str], known_sha: set[str]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Reviewed cells of every export, in export order, without those that cannot join, and how many were left
    out by reason (an image already in ``known_sha`` or seen earlier in the exports is left out)."""
    counts = {"missing_file": 0, "label_not_a_model_class": 0, "already_in_the_data": 0}
    known = set(known_sha)
    frames = []
    for export in exports:
        manifest = export / "manifest.csv"
        if not manifest.is_file():
            raise RunError(f"{export} is not a `lablens export-reviews` folder: it has no manifest.csv")
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
        missing = {"path", "label", "group"} - set(table.columns)
        if missing:
            raise RunError(
                f"{manifest} has no {', '.join(sorted(missing))} column (not an export-reviews file)"
            )
        for rec in table.to_dict("records"):
            path = export / rec["path"]
            if not path.is_file():
                counts["missing_file"] += 1
                continue
            if rec["label"] not in classes:
                counts["label_not_a_model_class"] += 1
                continue
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            if sha in known:
                counts["already_in_the_data"] += 1
                continue
            known.add(sha)
            frames.append(
                {
                    "path": str(path.resolve()),
                    "label": rec["label"],
                    "group": REVIEW_GROUP + rec["group"],
                    "sha256": sha,
                    "source": "review",
                }
            )
    return pd.DataFrame(frames, columns=["path", "label", "group", "sha256", "source"]), counts


def _review_partitions(reviews: pd.DataFrame, test_share: float, val_share: float, seed: int) -> pd.Series:
    """Partition per reviewed cell, by sample: the latest ``test_share`` of samples test, then validation."""
    samples = list(dict.fromkeys(reviews["group"]))  # first appearance = review order
    n_test = math.ceil(test_share * len(samples)) if len(samples) > 1 and test_share > 0 else 0
    held, rest = samples[len(samples) - n_test :], samples[: len(samples) - n_test]
    rng = np.random.default_rng(seed)
    n_val = round(val_share * len(rest))
    val = set(rng.permutation(np.asarray(rest, dtype=object))[:n_val].tolist()) if n_val else set()
    side = {g: "test" for g in held} | {g: "val" if g in val else "train" for g in rest}
    return reviews["group"].map(side)


class RetrainConfig(VerbConfig):
    """What a retrain changes besides the data (written as ``retrain.yaml`` into the retrain folder).

    Attributes:
        review_test: share of review samples (the most recent) held out as locked cases for promote, in
            ``[0, 1)``.
        epochs: training epochs; None keeps the run's own.
        start: ``bundle``: from the run's bundle (a warm start); ``run``: from the run's own initialisation;
            ``auto`` (default): the bundle when the model family can warm-start (the network families), else the
            run's initialisation.
    """

    verb: ClassVar[str] = "retrain"

    review_test: float = 0.2
    epochs: int | None = Field(None, ge=1)
    start: Literal["auto", "bundle", "run"] = "auto"


def retrain(
    run: str | Path,
    reviews: list[str | Path],
    out: str | Path,
    cfg: RetrainConfig | None = None,
    *,
    progress: bool = True,
    **settings: Any,
) -> RetrainResult:
    """Train the run's configuration again on its images plus the reviewed cells with ``cfg`` (or its settings as
    keywords, see :class:`RetrainConfig`); see the module docstring."""
    cfg = RetrainConfig.resolve(cfg, settings)
    review_test, epochs = cfg.review_test, cfg.epochs
    run, out = Path(run), Path(out)
    if not 0.0 <= review_test < 1.0:
        raise RunError(f"--review-test {review_test}: give the share of review samples held out, in [0, 1)")
    if not reviews:
        raise RunError("give at least one --reviews folder (written by `lablens export-reviews`)")
    original = _run_partitions(run)
    bundle = load_bundle(run / "bundle")
    run_cfg = load_config(run / "config.yaml")
    joined, counts = _joined_reviews(reviews, bundle.classes, original, review_test, run_cfg)
    data = pd.concat([original, joined], ignore_index=True)
    run_cfg = _retrain_config(run_cfg, epochs)
    run_cfg = _starting_point(run_cfg, run / "bundle", cfg.start)
    with run_folder(out, hint="choose a new --out for the retrain") as out:
        data_csv = out / "data.csv"
        data.to_csv(data_csv, index=False)
        write_json(out / "split.json", _fixed_split(data, run_cfg))
        run_cfg.data.path = str(data_csv)
        run_cfg.split.protocol = str(out / "split.json")
        locked = joined[joined["partition"] == "test"][["path", "label", "group"]]
        locked.to_csv(out / "locked_reviews.csv", index=False)
        result = train(data_csv, out / "run", run_cfg, progress=progress)
        epochs_run = run_cfg.train.epoch_count
        summary = _summary(run, reviews, bundle.hash, result, data, joined, locked, counts, epochs_run)
        write_json(out / "retrain.json", summary)
        cfg.write(out / "retrain.yaml")
    if progress:
        _print_retrained(run, out, summary, result.bundles[0])
    return RetrainResult(out, result.bundles[0], out / "locked_reviews.csv", summary, result)


def _joined_reviews(
    reviews: list[str | Path], classes: list[str], original: pd.DataFrame, review_test: float, cfg: RunConfig
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The reviewed cells that join the run's data, each with its partition, and how many were left out by
    reason; refuses when none can join."""
    joined, counts = _read_reviews([Path(r) for r in reviews], classes, set(original["sha256"]))
    if joined.empty:
        raise RunError(
            "no reviewed cell can join the training data ("
            + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items())
            + ")"
        )
    joined["partition"] = _review_partitions(joined, review_test, cfg.split.val_fraction, cfg.split.seed)
    return joined, counts


def _retrain_config(cfg: RunConfig, epochs: int | None) -> RunConfig:
    """The run's configuration reading a CSV of ``path, label, group`` (the retrain's ``data.csv``), with
    ``epochs`` when given."""
    cfg = cfg.model_copy(deep=True)
    cfg.data = cfg.data.model_copy(
        update={
            "layout": "csv",
            "path_column": "path",
            "label_column": "label",
            "group_column": "group",
            "group_regex": None,
            "reader_column": None,
        }
    )
    if epochs is not None:
        cfg.train.epochs = epochs
    return cfg


def _starting_point(cfg: RunConfig, bundle: Path, start: str) -> RunConfig:
    """``cfg`` warm-starting from ``bundle`` (``model.init``) when ``start`` asks for it or, with ``auto``, when
    the run's model family can; a :class:`RunError` when ``bundle`` is asked of a family that cannot."""
    can = get_spec(cfg.model.name).accepts("init")
    if start == "run" or (start == "auto" and not can):
        return cfg
    if not can:
        raise RunError(f"--start bundle: model {cfg.model.name!r} cannot warm-start; use --start run")
    cfg = cfg.model_copy(deep=True)
    cfg.model.init, cfg.model.weights = str(bundle.resolve()), "scratch"
    return cfg


def _fixed_split(data: pd.DataFrame, cfg: RunConfig) -> dict[str, Any]:
    """The ``split.json`` document of one fold holding every image of ``data`` in its ``partition``."""
    ids = [Path(p).as_posix() for p in data["path"]]  # absolute paths: the ids lablens reads them as
    fold = {
        side: [i for i, p in zip(ids, data["partition"], strict=True) if p == side]
        for side in ("train", "val", "test")
    }
    return {
        "schema": SPLIT_SCHEMA,
        "protocol": "file",
        "seed": cfg.split.seed,
        "val_fraction": cfg.split.val_fraction,
        "groups": dict(zip(ids, data["group"], strict=True)),
        "folds": [{"name": "retrain", **fold}],
    }


def _summary(
    run: Path,
    reviews: list[str | Path],
    bundle_hash: str,
    result: TrainResult,
    data: pd.DataFrame,
    joined: pd.DataFrame,
    locked: pd.DataFrame,
    counts: dict[str, int],
    epochs: int,
) -> dict[str, Any]:
    """``retrain.json``: the run and its bundle, the candidate, what joined and was left out, what is locked."""
    by = data.groupby(["source", "partition"]).size()
    return {
        "run": str(run),
        "current_bundle_hash": bundle_hash,
        "candidate_bundle": str(result.bundles[0]),
        "reviews": [str(r) for r in reviews],
        "reviewed_cells_joined": len(joined),
        "review_samples": int(joined["group"].nunique()),
        "left_out": counts,
        "images": {f"{s}/{p}": int(n) for (s, p), n in by.items()},
        "locked": {
            "original_test": int(((data["source"] == "original") & (data["partition"] == "test")).sum()),
            "review_test": len(locked),
            "review_test_samples": sorted(g.removeprefix(REVIEW_GROUP) for g in locked["group"].unique()),
        },
        "epochs": epochs,
    }


def _print_retrained(run: Path, out: Path, summary: dict[str, Any], candidate: Path) -> None:
    """What joined, what is held out, the candidate and the ``lablens promote`` command that comes next."""
    left = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in summary["left_out"].items() if v)
    console.print(
        f"retrained with {summary['reviewed_cells_joined']} reviewed cells from {summary['review_samples']} samples"
        f"{f' (left out: {left})' if left else ''}; {summary['locked']['review_test']} review cells held out as "
        f"locked cases → {out / 'locked_reviews.csv'}\ncandidate: {candidate}\nnext: lablens promote "
        f"{candidate} --against {run / 'bundle'} --data {original_data(run)} "
        f"--data {out / 'locked_reviews.csv'} --out PROMOTION",
        highlight=False,
    )


def original_data(run: Path) -> str:
    """The data the run was trained on (its config's ``data.path``)."""
    return str(load_config(run / "config.yaml").data.path)
