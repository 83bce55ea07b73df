"""The comparison's HTML report: ranking table, per-fold box plots, pairwise tests, confusion matrices,
feature importances and the run settings, in one self-contained file."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from lablens import __version__
from lablens.report.html import template_environment
from lablens.report.plots import confusion_matrix_png, fold_boxplot_png

SHOWN_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "mcc", "macro_auc")


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def render_compare_report(doc: dict[str, Any], title: str, settings: list[tuple[str, str]]) -> str:
    """HTML of a ``lablens.compare/1`` document."""
    table = doc["table"]
    per_method = {row["method"]: row for row in table}
    metrics = list(dict.fromkeys([doc["primary_metric"], *SHOWN_METRICS]))
    boxplots = [
        {
            "metric": m,
            "png": _b64(fold_boxplot_png({k: v["metrics"][m]["values"] for k, v in per_method.items()}, m)),
        }
        for m in metrics
    ]
    confusions = [
        {
            "method": row["method"],
            "png": _b64(confusion_matrix_png(row["confusion_matrix"], doc["classes"], True)),
        }
        for row in table
    ]
    html = (
        template_environment()
        .get_template("compare.html.j2")
        .render(
            version=__version__,
            title=title,
            subtitle=f"{len(table)} methods · {len(doc['classes'])} classes · winner: {doc['winner']}",
            primary=doc["primary_metric"],
            n_folds=len(doc["folds"]),
            protocol=doc.get("protocol", ""),
            level_pct=round(100 * doc["level"]),
            shown_metrics=metrics,
            table=table,
            boxplots=boxplots,
            pairwise=doc["pairwise"],
            binary=len(doc["classes"]) == 2,
            confusions=confusions,
            importances=doc["importances"],
            settings=settings,
        )
    )
    return html


def write_compare_report(
    path: Path, doc: dict[str, Any], title: str, settings: list[tuple[str, str]]
) -> Path:
    path.write_text(render_compare_report(doc, title, settings), encoding="utf-8")
    return path
