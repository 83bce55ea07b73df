"""``lablens phantom``: the built-in synthetic data with known truth, as a dataset, a contact sheet or a list."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

from lablens.errors import OutputExistsError, SettingError
from lablens.phantoms import PHANTOMS, write_phantoms
from lablens.phantoms import montage as contact_sheet
from lablens.progress import make_progress
from lablens.verb_config import VerbConfig


def phantom_list() -> list[str]:
    """One line per phantom task: name, classes, whether it has whole fields, what it is."""
    lines = []
    for name in PHANTOMS:
        spec = PHANTOMS.value(name)
        extra = " [--fields]" if spec.fields else ""
        lines.append(f"{name:24s}{len(spec.classes):3d} classes{extra}  {spec.description}")
    return lines


class PhantomConfig(VerbConfig):
    """``n`` images (or whole ``fields``) from ``seed`` at ``size`` pixels in ``groups`` synthetic patients, with
    extra defocus ``blur`` levels; ``montage``: a labelled contact sheet instead of a dataset."""

    verb: ClassVar[str] = "phantom"

    n: int = 400
    seed: int = 0
    size: int | None = None
    groups: int | None = None
    blur: str = "0"
    fields: bool = False
    montage: bool = False


def phantom(
    task: str,
    out: str | Path | None,
    cfg: PhantomConfig | None = None,
    *,
    progress: bool | None = None,
    **settings: Any,
) -> str:
    """Write phantoms of ``task`` into ``out`` (or, with ``montage``, a contact sheet) with ``cfg`` (or its
    settings as keywords), the settings beside them (``OUT/phantom.yaml``, ``<sheet>.yaml``); returns what was
    written, in one line per class."""
    cfg = PhantomConfig.resolve(cfg, settings)
    if out is None:
        raise SettingError("give an output folder: lablens phantom TASK OUT")
    out = Path(out)
    if cfg.montage:
        written = out.with_name(out.name + ".yaml")
        if out.exists() or written.exists():
            raise OutputExistsError(f"{out if out.exists() else written} exists; not overwritten")
        contact_sheet(task, out, per_class=8, seed=cfg.seed, size=cfg.size or 96, compact=True)
        cfg.write(written)
        return f"wrote contact sheet of '{task}' → {out}"
    with make_progress(sys.stderr.isatty() if progress is None else progress) as prog:
        df = write_phantoms(
            task, out, n=cfg.n, seed=cfg.seed, size=cfg.size, groups=cfg.groups, blur=cfg.blur, fields=cfg.fields,
            progress=prog,
        )  # fmt: skip
    cfg.write(out / "phantom.yaml")
    counts = df["label"].value_counts().sort_index()
    return (
        f"wrote {len(df)} {'fields' if cfg.fields else 'images'} of '{task}' in {df['group'].nunique()} groups → "
        f"{out}" + "".join(f"\n  {label:24s}{k:6d}" for label, k in counts.items())
    )
