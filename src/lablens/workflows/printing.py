"""What the command line prints of a result: headlines of metrics, rankings, the files a run wrote.

Kept here, beside the workflows that make the results, so that ``cli.py`` only builds configs and calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lablens.progress import console


def print_headline(metrics: dict[str, Any]) -> None:
    """The test metrics with their CIs (a held-out split) or the mean ± SD over folds (cross-validation)."""
    if "overall" in metrics:
        o = metrics["overall"]
        parts = []
        for k in ("accuracy", "balanced_accuracy", "macro_f1", "mcc", "macro_auc"):
            entry = o.get(k) or {}
            if entry.get("value") is not None:
                ci = entry.get("ci")
                parts.append(f"{k} {entry['value']:.3f}" + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci else ""))
        console.print(f"test (n={metrics.get('n')}): " + ", ".join(parts))
    elif "summary" in metrics:
        s = metrics["summary"]
        parts = [
            f"{k} {s[k]['mean']:.3f} ± {s[k]['sd'] or 0:.3f}"
            for k in ("accuracy", "macro_f1")
            if s.get(k, {}).get("mean") is not None
        ]
        console.print(f"cross-validation over {len(metrics['folds'])} folds: " + ", ".join(parts))
    else:
        return
    for note in metrics.get("notes") or []:
        console.print(f"  [yellow]⚠ {note}[/yellow]", highlight=False)


def print_trained(metrics: dict[str, Any], report: Path, bundles: list[Path]) -> None:
    """A finished training run: its headline, its report and its bundles (nothing on a non-zero rank)."""
    if not metrics:  # another process of a distributed run: rank 0 reports
        return
    print_headline(metrics)
    console.print(f"report: {report}")
    for b in bundles:
        console.print(f"bundle: {b}")


def print_ranking(doc: dict[str, Any]) -> None:
    """``lablens compare``'s ranking table."""
    from rich.markup import escape
    from rich.table import Table

    primary = doc["primary_metric"]
    table = Table(title=f"ranking by {primary} ({doc['protocol']})", title_justify="left")
    for col in ("#", "method", primary, "accuracy", "fit s/fold"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for row in doc["table"]:
        p, a = row["metrics"][primary], row["metrics"]["accuracy"]
        fmt = lambda s: "–" if s["mean"] is None else f"{s['mean']:.3f} ± {s['sd'] or 0:.3f}"  # noqa: E731
        table.add_row(str(row["rank"]), escape(row["method"]), fmt(p), fmt(a), f"{row['fit_s']:.1f}")
    console.print(table)


def print_compared(result: Any) -> None:
    """A finished comparison: the ranking, the report and the winner's bundle when one was saved."""
    print_ranking(result.document)
    console.print(f"report: {result.report}")
    if result.winner_bundle:
        console.print(f"winner bundle: {result.winner_bundle}")
