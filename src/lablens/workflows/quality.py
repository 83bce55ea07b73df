"""``lablens quality``: per-image quality measures (and, with a quality model, scores and flags) and a summary.

Works on unlabelled folders: every readable image under the inputs is measured on the crop a model would see
(``size``, ``resize_mode``). With ``model`` (a blur-level bundle) each image also gets its quality score
and whether it is evaluable. When an input folder holds a ``manifest.csv`` with a ``blur_level`` column
(a ``lablens degrade`` set), the summary is broken down by level.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from lablens.data.io import DecodeLimits, ImageError, read_image
from lablens.data.preprocess import to_square
from lablens.data.tables import read_text_csv
from lablens.data.validate import Problem
from lablens.errors import RunError
from lablens.infer.gate import QualityGate
from lablens.infer.predictor import expand_inputs
from lablens.progress import console, make_progress
from lablens.quality.measures import list_measures, measure_image
from lablens.verb_config import VerbConfig


@dataclass
class QualityResult:
    table: pd.DataFrame  # one row per measured image
    skipped: list[Problem] = field(default_factory=list)
    max_level: float | None = None

    def summary(self) -> pd.DataFrame:
        """Median of each measure (and flagged share) overall and, when known, per blur level."""
        cols = [c for c in [*list_measures(), "quality_score"] if c in self.table]
        agg = {c: "median" for c in cols}
        overall = self.table[cols].agg(agg).to_frame().T
        overall.insert(0, "images", len(self.table))
        if "evaluable" in self.table:
            overall["not_evaluable"] = int((~self.table["evaluable"]).sum())
        overall.index = ["all"]
        if "blur_level" not in self.table:
            return overall
        by_level = self.table.groupby("blur_level")
        per = by_level[cols].median()
        per.insert(0, "images", by_level.size())
        if "evaluable" in self.table:
            per["not_evaluable"] = by_level["evaluable"].apply(lambda s: int((~s).sum()))
        per.index = [f"level {int(v)}" for v in per.index]
        return pd.concat([overall, per])


def _manifest_levels(inputs: Iterable[str | Path]) -> dict[str, int]:
    """Blur levels recorded by ``lablens degrade`` manifests in the input folders, by resolved path."""
    levels: dict[str, int] = {}
    for item in inputs:
        man = Path(item) / "manifest.csv"
        if Path(item).is_dir() and man.is_file():
            df = read_text_csv(man)
            if {"path", "blur_level"} <= set(df.columns):
                for p, lv in zip(df["path"], df["blur_level"], strict=True):
                    if lv.strip().lstrip("-").isdigit():
                        levels[str((Path(item) / p).resolve())] = int(lv)
    return levels


class QualityConfig(VerbConfig):
    """How images are measured: ``size``/``resize_mode``, the square the measures are taken on; ``model``, a
    quality (blur-level) bundle scoring each image, above ``max_level`` not evaluable."""

    verb: ClassVar[str] = "quality"

    model: Path | None = None
    max_level: float = 2.5
    size: int = 128
    resize_mode: Literal["pad", "squash", "crop"] = "pad"


def quality(
    inputs: Iterable[str | Path],
    out: str | Path | None = None,
    cfg: QualityConfig | None = None,
    *,
    progress: bool = True,
    **settings: Any,
) -> QualityResult:
    """Measure every readable image in ``inputs`` with ``cfg`` (or its settings as keywords); write ``out`` (CSV,
    its settings beside it in ``<out>.yaml``) when given; print a summary."""
    cfg = QualityConfig.resolve(cfg, settings)
    model, max_level, size, resize_mode = cfg.model, cfg.max_level, cfg.size, cfg.resize_mode
    inputs = list(inputs)
    for taken in [Path(out), Path(out).with_name(Path(out).name + ".yaml")] if out is not None else []:
        if taken.exists():
            raise RunError(f"{taken} exists; choose another --out (nothing is overwritten)")
    files, skipped = expand_inputs(inputs)
    if not files and not skipped:
        raise RunError("no image files found in the given paths")
    gate = QualityGate.load(model, max_level) if model is not None else None
    levels = _manifest_levels(inputs)
    rows: list[dict[str, object]] = []
    raw: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    with make_progress(progress) as prog:
        task = prog.task("measuring quality", len(files))
        for f in files:
            try:
                img = read_image(f, DecodeLimits())
            except ImageError as exc:
                skipped.append(Problem(str(f), exc.kind, exc.reason))
                task.advance(1)
                continue
            row: dict[str, object] = {"path": str(f)}
            level = levels.get(str(f.resolve()))
            if level is not None:
                row["blur_level"] = level
            row.update(measure_image(to_square(img.pixels, size, resize_mode)))
            rows.append(row)
            if gate is not None:
                raw.append(img.pixels)
                if len(raw) == 64:  # score in batches: full-size images are not all held in memory
                    scores.append(gate.score(raw))
                    raw.clear()
            task.advance(1)
        task.done()
    table = pd.DataFrame(rows)
    if gate is not None and len(table):
        scores.append(gate.score(raw))
        table["quality_score"] = np.concatenate(scores)
        table["evaluable"] = gate.evaluable(table["quality_score"].to_numpy())
    result = QualityResult(table, skipped, max_level if gate is not None else None)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)
        cfg.write(Path(out).with_name(Path(out).name + ".yaml"))
    if progress:
        _print(result, out)
    return result


def _print(result: QualityResult, out: str | Path | None) -> None:
    for s in result.skipped:
        console.print(
            f"  [yellow]skipped[/yellow] {s.path}: {s.reason} [dim]({s.kind})[/dim]", highlight=False
        )
    if len(result.table) and len(result.table) <= 20:
        console.print(result.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"), highlight=False)
    if len(result.table):
        console.print("summary (medians):", highlight=False)
        console.print(result.summary().to_string(float_format=lambda v: f"{v:.4g}"), highlight=False)
    flagged = ""
    if result.max_level is not None and len(result.table):
        flagged = f", {int((~result.table['evaluable']).sum())} not evaluable (score > {result.max_level:g})"
    where = f" → {out}" if out is not None else ""
    console.print(f"{len(result.table)} images measured{flagged}, {len(result.skipped)} skipped{where}")
