"""What the command line prints: headlines of metrics, rankings, the files a run wrote, data reports, warnings.

Kept here, beside the workflows that make the results, so that ``cli.py`` only builds configs and calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lablens.data.validate import DataReport
from lablens.progress import console
from lablens.workflows.reading import SEEN


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


def print_data_report(report: DataReport, max_lines: int = 50) -> None:
    """Human summary of a data report on stderr: counts, then each problem with its file and reason.

    Images left out because the model trained or validated on them are not problems of the data: they are said
    in one line, not file by file."""
    seen = [p for p in report.problems if p.kind == SEEN]
    problems = [p for p in report.problems if p.kind != SEEN]
    console.print(
        f"[bold]{report.source}[/bold] ({report.layout}): {report.n_found} files, "
        f"[green]{report.n_usable} usable[/green], "
        + (f"[yellow]{len(problems)} skipped[/yellow]" if problems else "0 skipped")
        + f"; {len(report.class_counts)} classes, {report.n_groups} groups (groups from {report.group_source})"
    )
    for note in report.notes:
        console.print(f"  note: {note}")
    if seen:
        console.print(
            f"  {len(seen)} image(s) the model was trained or validated on are left out of this evaluation "
            "(listed in data_report.json; --include-seen scores them too)"
        )
    if report.class_counts:
        console.print("  classes: " + ", ".join(f"{c} {n}" for c, n in report.class_counts.items()))
    for p in problems[:max_lines]:
        console.print(
            f"  [yellow]skipped[/yellow] {p.path}: {p.reason} [dim]({p.kind})[/dim]",
            markup=True,
            highlight=False,
        )
    if len(problems) > max_lines:
        console.print(f"  … and {len(problems) - max_lines} more (see data_report.json)")
    if problems:
        kinds: dict[str, int] = {}
        for p in problems:
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        console.print("  skipped by reason: " + ", ".join(f"{k} {n}" for k, n in kinds.items()))


def warn(message: str) -> None:
    """A warning the user should read, shown even with --quiet (e.g. why a faster path could not be used)."""
    console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)
