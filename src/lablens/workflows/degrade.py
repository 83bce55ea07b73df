"""``lablens degrade``: a synthetic-blur database (like DeepMT-ND's IFVB) built from any labelled dataset.

Every usable image is written once per blur level (level 0 is the clean image) as a lossless PNG, and
``manifest.csv`` records for each copy its label, its group, the clean source it came from and the full
degradation record (kind, PSF size, motion angle, noise sd and seed), so any copy can be rebuilt exactly;
the source manifest's other columns follow as ``source_<name>``.
A copy's ``group`` is its source's group (the source image itself when the data name no patients), so a
grouped split never puts a blurred copy on the other side of its clean twin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from PIL import Image

from lablens.config import DataConfig
from lablens.data.io import read_image
from lablens.data.preprocess import to_square
from lablens.errors import RunError
from lablens.progress import console, make_progress
from lablens.quality.degrade import apply_degradation, parse_kinds, parse_levels, sample_degradation
from lablens.quality.psf import KINDS
from lablens.verb_config import VerbConfig
from lablens.workflows.printing import print_data_report
from lablens.workflows.reading import limits_from, read_data
from lablens.workflows.run_folder import check_new_folder, run_folder

# the source manifest's columns every copy gets anyway; any other column is kept as ``source_<name>``
_OWN_COLUMNS = ("id", "path", "label", "group", "sha256", "width", "height", "source_mode")


@dataclass
class DegradeResult:
    out: Path
    manifest: pd.DataFrame
    n_sources: int
    n_skipped: int


class DegradeConfig(VerbConfig):
    """How each image is degraded (written as ``degrade.yaml`` beside the copies).

    Attributes:
        levels: blur levels, ``"0-4"`` or ``"0,2,4"``; level L has PSF sd ``L * side / 96`` pixels.
        kinds: blur kinds drawn uniformly per copy (``defocus``, ``gaussian``, ``motion``).
        noise: largest sensor-noise sd in 0..1 units (each blurred copy draws its own in ``[0, noise]``).
        size: resize each image to a ``size×size`` square first (the crop a model sees); None keeps it.
        seed: the same seed gives the same files; each copy's randomness depends only on the seed, the
            source's id and the level, so adding images does not change the others.
        data: how the images are read (their label and group columns).
    """

    verb: ClassVar[str] = "degrade"

    levels: str | list[int] = "0-4"
    kinds: str | list[str] = ",".join(KINDS)
    noise: float = 0.01
    size: int | None = None
    seed: int = 0
    data: DataConfig = DataConfig()


def degrade(
    data: str | Path,
    out: str | Path,
    cfg: DegradeConfig | None = None,
    *,
    progress: bool = True,
    **settings: Any,
) -> DegradeResult:
    """Write every usable image of ``data`` at every blur level into the new folder ``out``, with ``cfg`` (or its
    settings as keywords, see :class:`DegradeConfig`)."""
    cfg = DegradeConfig.resolve(cfg, settings)
    levels, kinds, noise, size, seed, data_cfg = (
        cfg.levels,
        cfg.kinds,
        cfg.noise,
        cfg.size,
        cfg.seed,
        cfg.data,
    )
    check_new_folder(Path(out), "choose a new folder")
    lv, kd = parse_levels(levels), parse_kinds(kinds)
    if not 0.0 <= noise <= 0.5:
        raise RunError(f"--noise must lie in 0..0.5 (sd in 0..1 intensity units), got {noise}")
    with run_folder(out, hint="choose a new folder") as out, make_progress(progress) as prog:
        manifest, report = read_data(data, data_cfg, prog)
        if progress:
            print_data_report(report)
        rows = []
        extras = [c for c in manifest.table.columns if c not in _OWN_COLUMNS]
        task = prog.task(f"degrading at levels {','.join(map(str, lv))}", len(manifest))
        for rec in manifest.table.to_dict("records"):
            pixels = read_image(rec["path"], limits_from(data_cfg)).pixels
            if size:
                pixels = to_square(pixels, size, data_cfg.resize_mode)
            stem = PurePosixPath(rec["id"]).with_suffix("")
            if stem.is_absolute() or ".." in stem.parts:  # an id outside the data root: keep its name only
                stem = PurePosixPath(stem.name)
            for level in lv:
                rng = np.random.default_rng([seed, _stable_int(rec["id"]), level])
                d = sample_degradation(level, kd, rng, noise)
                rel = f"{stem}__L{level}.png"
                target = out / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(apply_degradation(pixels, d)).save(target, format="PNG")
                rows.append(
                    {
                        "path": rel,
                        "label": rec["label"],
                        "group": rec["group"],
                        "source": rec["id"],
                        "source_sha256": rec["sha256"],
                        **d.record(min(pixels.shape[:2])),
                        **{f"source_{c}": rec[c] for c in extras},
                    }
                )
            task.advance(1)
        task.done()
        table = pd.DataFrame(rows)
        table.to_csv(out / "manifest.csv", index=False)
        cfg.write(out / "degrade.yaml")
    if progress:
        console.print(
            f"{len(manifest)} images × {len(lv)} levels → {len(table)} files in {out} "
            f"({report.n_skipped} inputs skipped); train on it with --label-column label or blur_level"
        )
    return DegradeResult(out, table, len(manifest), report.n_skipped)


def _stable_int(text: str) -> int:
    """A process-independent integer from a string (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
