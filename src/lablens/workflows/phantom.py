"""``lablens phantom``: the built-in synthetic data with known truth, as a dataset, a contact sheet or a list."""

from __future__ import annotations

import sys
from pathlib import Path

from lablens.errors import OutputExistsError, SettingError
from lablens.phantoms import PHANTOM_TASKS, write_phantoms
from lablens.phantoms import montage as contact_sheet
from lablens.progress import make_progress


def phantom_tasks() -> list[str]:
    """One line per phantom task: name, classes, whether it has whole fields, what it is."""
    lines = []
    for name in PHANTOM_TASKS:
        spec = PHANTOM_TASKS.value(name)
        extra = " [--fields]" if spec.fields else ""
        lines.append(f"{name:24s}{len(spec.classes):3d} classes{extra}  {spec.description}")
    return lines


def phantom(
    task: str,
    out: str | Path | None,
    *,
    n: int = 400,
    seed: int = 0,
    size: int | None = None,
    groups: int | None = None,
    blur: str = "0",
    fields: bool = False,
    montage: bool = False,
    progress: bool | None = None,
) -> str:
    """Write ``n`` phantoms of ``task`` into ``out`` (or, with ``montage``, a contact sheet); returns what was
    written, in one line per class."""
    if out is None:
        raise SettingError("give an output folder: lablens phantom TASK OUT")
    out = Path(out)
    if montage:
        if out.exists():
            raise OutputExistsError(f"{out} exists; not overwritten")
        contact_sheet(task, out, per_class=8, seed=seed, size=size or 96, compact=True)
        return f"wrote contact sheet of '{task}' → {out}"
    with make_progress(sys.stderr.isatty() if progress is None else progress) as prog:
        df = write_phantoms(
            task, out, n=n, seed=seed, size=size, groups=groups, blur=blur, fields=fields, progress=prog
        )
    counts = df["label"].value_counts().sort_index()
    return (
        f"wrote {len(df)} {'fields' if fields else 'images'} of '{task}' in {df['group'].nunique()} groups → {out}"
        + "".join(f"\n  {label:24s}{k:6d}" for label, k in counts.items())
    )
