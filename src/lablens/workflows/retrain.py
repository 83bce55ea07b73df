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
left out) and ``run/``: the training run with the candidate bundle (``run/bundle``). Retraining starts from
the run's own initialisation (its ``model.weights``), so the candidate differs from the model in service only
by the data; ``epochs`` may be changed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lablens.config import load_config
from lablens.data.splits import SPLIT_SCHEMA
from lablens.infer.bundle import load_bundle
from lablens.progress import console
from lablens.workflows.common import RunError, write_json
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
    exports: list[Path], classes: list[str], known_sha: set[str], counts: dict[str, int]
) -> pd.DataFrame:
    """Reviewed cells of every export, in export order, without those that cannot join (counted by reason)."""
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
            if sha in known_sha:
                counts["already_in_the_data"] += 1
                continue
            known_sha.add(sha)
            frames.append(
                {
                    "path": str(path.resolve()),
                    "label": rec["label"],
                    "group": REVIEW_GROUP + rec["group"],
                    "sha256": sha,
                    "source": "review",
                }
            )
    return pd.DataFrame(frames, columns=["path", "label", "group", "sha256", "source"])


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


def retrain(
    run: str | Path,
    reviews: list[str | Path],
    out: str | Path,
    *,
    review_test: float = 0.2,
    epochs: int | None = None,
    progress: bool = True,
) -> RetrainResult:
    """Train the run's configuration again on its images plus the reviewed cells; see the module docstring."""
    run, out = Path(run), Path(out)
    if not 0.0 <= review_test < 1.0:
        raise RunError(f"--review-test {review_test}: give the share of review samples held out, in [0, 1)")
    if not reviews:
        raise RunError("give at least one --reviews folder (written by `lablens export-reviews`)")
    original = _run_partitions(run)
    bundle = load_bundle(run / "bundle")
    cfg = load_config(run / "config.yaml")
    counts = {"missing_file": 0, "label_not_a_model_class": 0, "already_in_the_data": 0}
    joined = _read_reviews([Path(r) for r in reviews], bundle.classes, set(original["sha256"]), counts)
    if joined.empty:
        raise RunError(
            "no reviewed cell can join the training data ("
            + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items())
            + ")"
        )
    joined["partition"] = _review_partitions(joined, review_test, cfg.split.val_fraction, cfg.split.seed)
    data = pd.concat([original, joined], ignore_index=True)
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
    with run_folder(out, hint="choose a new --out for the retrain") as out:
        data_csv = out / "data.csv"
        data.to_csv(data_csv, index=False)
        ids = [Path(p).as_posix() for p in data["path"]]  # absolute paths: the ids lablens reads them as
        fold = {
            side: [i for i, p in zip(ids, data["partition"], strict=True) if p == side]
            for side in ("train", "val", "test")
        }
        split = {
            "schema": SPLIT_SCHEMA,
            "protocol": "file",
            "seed": cfg.split.seed,
            "val_fraction": cfg.split.val_fraction,
            "groups": dict(zip(ids, data["group"], strict=True)),
            "folds": [{"name": "retrain", **fold}],
        }
        write_json(out / "split.json", split)
        cfg.data.path = str(data_csv)
        cfg.split.protocol = str(out / "split.json")
        locked = joined[joined["partition"] == "test"][["path", "label", "group"]]
        locked.to_csv(out / "locked_reviews.csv", index=False)
        result = train(data_csv, out / "run", cfg, progress=progress)
        by = data.groupby(["source", "partition"]).size()
        summary = {
            "run": str(run),
            "current_bundle_hash": bundle.hash,
            "candidate_bundle": str(result.bundles[0]),
            "reviews": [str(r) for r in reviews],
            "reviewed_cells_joined": len(joined),
            "review_samples": int(joined["group"].nunique()),
            "left_out": counts,
            "images": {f"{s}/{p}": int(n) for (s, p), n in by.items()},
            "locked": {
                "original_test": int((original["partition"] == "test").sum()),
                "review_test": len(locked),
                "review_test_samples": sorted(g.removeprefix(REVIEW_GROUP) for g in locked["group"].unique()),
            },
            "epochs": cfg.train.epochs,
        }
        write_json(out / "retrain.json", summary)
    if progress:
        left = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items() if v)
        console.print(
            f"retrained with {len(joined)} reviewed cells from {summary['review_samples']} samples"
            f"{f' (left out: {left})' if left else ''}; {len(locked)} review cells held out as locked cases → "
            f"{out / 'locked_reviews.csv'}\ncandidate: {result.bundles[0]}\nnext: lablens promote "
            f"{result.bundles[0]} --against {run / 'bundle'} --data {original_data(run)} "
            f"--data {out / 'locked_reviews.csv'} --out PROMOTION",
            highlight=False,
        )
    return RetrainResult(out, result.bundles[0], out / "locked_reviews.csv", summary, result)


def original_data(run: Path) -> str:
    """The data the run was trained on (its config's ``data.path``)."""
    return str(load_config(run / "config.yaml").data.path)
