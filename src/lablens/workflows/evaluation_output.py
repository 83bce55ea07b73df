"""An evaluation's outputs: the metrics document, the per-image prediction table and the HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lablens.config import EvalConfig
from lablens.data.manifest import Manifest
from lablens.evaluate.calibration import expected_calibration_error
from lablens.evaluate.summary import evaluate_predictions
from lablens.jsonio import write_json


def evaluate_and_write(
    out_dir: Path,
    manifest: Manifest,
    images: np.ndarray,
    proba: np.ndarray,
    *,
    eval_cfg: EvalConfig,
    temperature: float = 1.0,
    uncalibrated_proba: np.ndarray | None = None,
    history: list[dict] | None = None,
    run_info: dict | None = None,
    title: str = "lablens evaluation report",
    subtitle: str | None = None,
    estimator: Any = None,
    extra: dict[str, Any] | None = None,
) -> dict:
    """Compute the metrics document and write ``metrics.json``, ``predictions.csv`` and ``report.html``.

    With a deep ``estimator`` the report's error gallery shows a Grad-CAM overlay beside each image; ``extra``
    blocks (e.g. what synthetic images joined training) are added to the document as they are.
    """
    from lablens.explain.gradcam import explainer_for
    from lablens.report.html import write_report

    classes = manifest.classes
    y = manifest.y
    metrics = evaluate_predictions(
        y,
        proba,
        classes,
        groups=manifest.groups,
        reader=manifest.reader,
        n_boot=eval_cfg.bootstrap,
        level=eval_cfg.level,
        seed=0,
        top_k=tuple(eval_cfg.top_k),
        n_bins=eval_cfg.ece_bins,
    )
    metrics["groups_from"] = manifest.group_source  # the report says when there were no patient ids
    metrics["calibration"]["temperature"] = float(temperature)
    if uncalibrated_proba is not None:
        metrics["calibration"]["ece_uncalibrated"] = float(
            expected_calibration_error(uncalibrated_proba, y, n_bins=eval_cfg.ece_bins)
        )
    metrics.update(extra or {})
    write_json(out_dir / "metrics.json", metrics)
    write_prediction_table(out_dir / "predictions.csv", manifest, proba)
    write_report(
        out_dir / "report.html",
        metrics,
        y_true=y,
        proba=proba,
        classes=classes,
        ids=manifest.ids,
        images=np.asarray(images),
        history=history,
        title=title,
        subtitle=subtitle,
        run_info=run_info,
        explain=explainer_for(estimator) if estimator is not None else None,
    )
    return metrics


def write_prediction_table(path: Path, manifest: Manifest, proba: np.ndarray) -> None:
    """Per-image predictions for an evaluated set: truth, prediction, rank-1 probability, all probabilities."""
    classes = manifest.classes
    pred = proba.argmax(1)
    table = pd.DataFrame(
        {
            "id": manifest.ids,
            "label": manifest.table["label"].tolist(),
            "group": manifest.table["group"].tolist(),
            "predicted": [classes[i] for i in pred],
            "probability": proba.max(1).round(6),
            "correct": pred == manifest.y,
        }
    )
    if manifest.reader is not None:
        table["reader"] = manifest.reader
    for j, c in enumerate(classes):
        table[f"p_{c}"] = proba[:, j].round(6)
    table.to_csv(path, index=False)
