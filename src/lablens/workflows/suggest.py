"""``lablens suggest BUNDLE UNLABELLED… --n 50 --out DIR``: the images a technician should label next.

Every readable image of ``UNLABELLED`` (files, folders, CSV/list files) is classified by the bundle (calibrated
probabilities, out-of-distribution guard) and embedded by its network; :mod:`lablens.infer.acquisition` picks
the next batch (uncertain **and** spread over the embeddings). ``DIR`` accumulates batches, never rewriting one:

- ``batch-001.csv``: the batch in the layout ``lablens train`` reads (``path``, an empty ``label`` to fill in),
  with ``rank``, ``uncertainty``, the bundle's ``predicted`` class and its ``probability``, ``ood_score`` and
  ``sha256``; ``batch-001.png``: its contact sheet; ``batch-001.yaml``: the settings;
- ``batch-001-ood.csv``: images the guard flags as unlike the bundle's training images, in their own list and
  never in a batch — they say the data shifted, and labelling them first teaches the model the new data.

Running again with the same ``DIR`` writes the next batch: images suggested before, images given as
``--labelled``, and images the bundle was trained on (by content hash) are never suggested, and diversity starts
from them. The batch is a pure function of the inputs, the bundle, what is excluded and ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from lablens.data.io import read_image
from lablens.errors import RunError, SettingError
from lablens.infer.acquisition import suggest_rows
from lablens.infer.bundle import Bundle, load_bundle
from lablens.infer.ood import DEFAULT_ALPHA, OUT_OF_DISTRIBUTION, OodAlpha
from lablens.infer.predictor import CLASSIFIED, Predictor
from lablens.progress import console, make_progress
from lablens.report.contact_sheet import contact_sheet
from lablens.verb_config import VerbConfig
from lablens.workflows.printing import warn
from lablens.workflows.reading import no_usable_image
from lablens.workflows.train import SEEN_PREFIX


class SuggestConfig(VerbConfig):
    """How ``lablens suggest`` picks a batch (written as ``batch-NNN.yaml`` beside it).

    Attributes:
        n: images in the batch.
        rule: ``margin`` | ``entropy`` (uncertainty, then k-center diversity) | ``random`` (the baseline).
        pool_factor: diversity chooses among the ``pool_factor × n`` most uncertain images.
        seed: breaks ties (and draws the ``random`` batch).
        labelled: files, folders or CSVs of images already labelled: never suggested; diversity starts from them.
        ood_alpha: the bundle's out-of-distribution guard (its flag rate on images like its training images;
            ``off`` lists no image apart).
        batch_size, device: inference settings.
    """

    verb: ClassVar[str] = "suggest"

    n: int = Field(50, ge=1)
    rule: Literal["margin", "entropy", "random"] = "margin"
    pool_factor: float = Field(10.0, ge=1.0)
    seed: int = 0
    labelled: list[str] = Field(default_factory=list)
    ood_alpha: OodAlpha = DEFAULT_ALPHA
    batch_size: int = Field(64, ge=1)
    device: str = "auto"


@dataclass
class SuggestResult:
    """The batch written: its CSV, contact sheet and OOD list, and what was left out."""

    batch: Path
    sheet: Path
    ood: Path
    table: pd.DataFrame
    n_candidates: int
    n_excluded: int
    n_ood: int
    n_skipped: int


@dataclass
class _Pool:
    """The unlabelled images as the bundle sees them, row for row."""

    paths: list[str]
    sha256: list[str]
    proba: np.ndarray
    status: np.ndarray
    ood: np.ndarray
    emb: np.ndarray
    n_skipped: int


def suggest(
    bundle: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    cfg: SuggestConfig | None = None,
    *,
    progress: bool = True,
    **settings: Any,
) -> SuggestResult:
    """Write the next batch of images to label into ``out`` (see the module docstring)."""
    cfg = SuggestConfig.resolve(cfg, settings)
    out = Path(out)
    b = load_bundle(bundle)
    if b.inputs != "images":
        raise SettingError(
            f"{b.path}: lablens suggest ranks images; this bundle classifies samples (bags of cells)"
        )
    number, earlier = _earlier_batches(out)
    with make_progress(progress) as prog:
        predictor = Predictor.prepared(
            b, warn, batch_size=cfg.batch_size, device=cfg.device, ood_alpha=cfg.ood_alpha
        )
        pool = _score(predictor, b, inputs, cfg, prog, "UNLABELLED")
        labelled = _score(predictor, b, cfg.labelled, cfg, prog, "--labelled") if cfg.labelled else None
    known = _known_hashes(b, earlier, labelled)
    excluded = np.array([h in known or h[:SEEN_PREFIX] in known for h in pool.sha256], dtype=bool)
    ood = pool.status == OUT_OF_DISTRIBUTION
    eligible = ~excluded & (pool.status == CLASSIFIED)
    picked = _pick(pool, labelled, eligible, excluded, cfg)
    name = f"batch-{number:03d}"
    out.mkdir(parents=True, exist_ok=True)
    table = _table(pool, b, picked.rows, picked.uncertainty)
    table.to_csv(out / f"{name}.csv", index=False)
    _table(pool, b, [int(i) for i in np.flatnonzero(ood & ~excluded)], picked.uncertainty).sort_values(
        "ood_score", ascending=False
    ).to_csv(out / f"{name}-ood.csv", index=False)
    sheet = _sheet(table, out / f"{name}.png")
    cfg.write(out / f"{name}.yaml")
    result = SuggestResult(
        out / f"{name}.csv", sheet, out / f"{name}-ood.csv", table, int(eligible.sum()), int(excluded.sum()),
        int((ood & ~excluded).sum()), pool.n_skipped,
    )  # fmt: skip
    if progress:
        _print(result)
    return result


def _earlier_batches(out: Path) -> tuple[int, list[Path]]:
    """The number of the next batch in ``out`` and the batches already there."""
    if out.exists() and not out.is_dir():
        raise RunError(f"{out} is a file; --out is a folder that collects the batches")
    earlier = sorted(out.glob("batch-[0-9][0-9][0-9].csv")) if out.is_dir() else []
    return len(earlier) + 1, earlier


def _score(
    predictor: Predictor, b: Bundle, inputs: list[Any], cfg: SuggestConfig, prog: Any, what: str
) -> _Pool:
    """Probabilities, status, OOD scores and embeddings of every readable image of ``inputs`` (``what``: which
    argument they came from, for messages)."""
    embeddings: list[np.ndarray] = []
    hashes: list[str] = []

    def embed(images: np.ndarray, sha256: list[str]) -> None:
        embeddings.append(np.asarray(b.estimator.embed(images, device=cfg.device), dtype=np.float32))
        hashes.extend(sha256)

    result = predictor.predict_files(inputs, progress=prog, on_images=embed)
    for s in result.skipped:
        warn(f"skipped {s.path}: {s.reason}")
    if not result.paths:
        why = no_usable_image(result.skipped) if result.skipped else "no image files found in the given paths"
        raise RunError(f"{what}: {why}")
    status = (
        result.status if result.status is not None else np.full(len(result.paths), CLASSIFIED, dtype=object)
    )
    ood = result.ood if result.ood is not None else np.full(len(result.paths), np.nan)
    return _Pool(
        result.paths, hashes, result.proba, status, ood, np.concatenate(embeddings), len(result.skipped)
    )


def _known_hashes(b: Bundle, earlier: list[Path], labelled: _Pool | None) -> set[str]:
    """Content hashes (full, or the card's prefixes of its training images) that are never suggested."""
    known = set((b.card.get("training") or {}).get("seen_sha256_prefixes") or [])
    for f in earlier:
        known.update(pd.read_csv(f, dtype=str)["sha256"].dropna())
    if labelled is not None:
        known.update(labelled.sha256)
    return known


def _pick(
    pool: _Pool, labelled: _Pool | None, eligible: np.ndarray, excluded: np.ndarray, cfg: SuggestConfig
) -> Any:
    """The batch's rows: diversity starts from the excluded rows of the pool and the labelled images."""
    proba, emb = pool.proba, pool.emb
    centres = excluded.copy()
    if labelled is not None:
        proba = np.concatenate([proba, labelled.proba])
        emb = np.concatenate([emb, labelled.emb])
        eligible = np.concatenate([eligible, np.zeros(len(labelled.paths), dtype=bool)])
        centres = np.concatenate([centres, np.ones(len(labelled.paths), dtype=bool)])
    return suggest_rows(
        proba, emb, eligible, centres, cfg.n, rule=cfg.rule, pool_factor=cfg.pool_factor, seed=cfg.seed
    )


def _table(pool: _Pool, b: Bundle, rows: list[int], u: np.ndarray) -> pd.DataFrame:
    """The rows in the layout ``lablens train`` reads (``label`` empty), with why each was chosen."""
    classes = np.asarray(b.classes)
    return pd.DataFrame(
        {
            "path": [pool.paths[i] for i in rows],
            "label": "",
            "rank": np.arange(1, len(rows) + 1),
            "uncertainty": [round(float(u[i]), 6) for i in rows],
            "predicted": [str(classes[int(np.argmax(pool.proba[i]))]) for i in rows],
            "probability": [round(float(np.max(pool.proba[i])), 6) for i in rows],
            "ood_score": [round(float(pool.ood[i]), 6) for i in rows],
            "sha256": [pool.sha256[i] for i in rows],
        }
    )


def _sheet(table: pd.DataFrame, out_png: Path) -> Path:
    """The batch's contact sheet: each image with its rank and the bundle's guess."""
    images = [read_image(p).pixels for p in table["path"]]
    captions = [
        f"#{r} {c[:8]} {p:.2f}"
        for r, c, p in zip(table["rank"], table["predicted"], table["probability"], strict=True)
    ]
    return contact_sheet(images, captions, out_png)


def _print(r: SuggestResult) -> None:
    console.print(
        f"{len(r.table)} images to label → {r.batch} (contact sheet {r.sheet.name}); chosen from {r.n_candidates} "
        f"candidates, {r.n_excluded} left out as labelled or suggested before, {r.n_skipped} skipped",
        highlight=False,
    )
    if r.n_ood:
        console.print(
            f"[yellow]{r.n_ood} images are unlike the bundle's training images[/yellow] → {r.ood}: "
            "label these first, they show how the data shifted",
            highlight=False,
        )
