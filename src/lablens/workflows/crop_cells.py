"""``lablens crop-cells``: single-cell training images from annotated fields, cut the way analysis cuts them.

Boxes with a per-cell label (a box CSV ``path, label, x0, y0, x1, y1``, a COCO JSON, or a folder of Pascal VOC
files named like the fields) are cropped around each box centre at the task's physical crop size
(:func:`~lablens.fields.crops.crop_cells`, the cropper ``lablens analyze`` uses). The result is a dataset
``lablens train`` reads directly: ``<label>/<image>.png``, ``manifest.csv`` (``path, label, group`` = the
field's sample, plus the field and box), ``crop_geometry.json``, which ``lablens train`` records in the bundle
so that ``lablens analyze`` can check it, and ``crop_cells.yaml`` (the settings, loadable with ``--config``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from PIL import Image
from pydantic import Field

from lablens.data.io import ImageError, read_image
from lablens.data.validate import Problem
from lablens.errors import RunError
from lablens.fields.annotations import Truth, read_box_csv, read_coco, read_voc
from lablens.fields.cell_crops import CropGeometry
from lablens.fields.crops import crop_cells
from lablens.fields.detection import Detection
from lablens.fields.pipeline import FieldInput
from lablens.fields.presets import ANA_WHOLE_CELLS, FieldPreset, get_preset
from lablens.jsonio import write_json
from lablens.progress import console, make_progress
from lablens.verb_config import VerbConfig
from lablens.workflows.analyze import read_fields
from lablens.workflows.run_folder import run_folder

GEOMETRY_FILE = "crop_geometry.json"


@dataclass
class CropResult:
    out: Path
    n_cells: int
    counts: dict[str, int]
    skipped: list[Problem] = field(default_factory=list)


def read_boxes(annotations: Path, label: str | None, labelled: bool = True) -> tuple[dict[str, Truth], str]:
    """Boxes by resolved image path (``by=path``) or by file stem (``by=stem``, VOC folders); ``labelled=False``
    reads a box CSV without a label column."""
    if annotations.is_dir():
        found = {p.stem: read_voc(p) for p in sorted(annotations.glob("*.xml"))}
        return found, "stem"
    if annotations.suffix.lower() == ".json":
        raw = read_coco(annotations, label)
    elif annotations.suffix.lower() == ".csv":
        raw = read_box_csv(annotations, label or ("label" if labelled else None))
    else:
        raise RunError(
            f"--annotations {annotations}: give a box CSV, a COCO .json or a folder of VOC .xml files"
        )
    return {str((annotations.parent / k).resolve()): v for k, v in raw.items()}, "path"


class CropCellsConfig(VerbConfig):
    """How annotated boxes are cut (written as ``crop_cells.yaml`` into the new dataset).

    Attributes:
        task: field preset whose crop size and object kind are used (``ana`` | ``blood``).
        whole_cells: IIF boxes hold whole cells (cytoplasmic patterns): the whole-cell preset's 30 µm crops.
        label: CSV column, or COCO annotation attribute, holding a cell's label (default: label / category).
        um_per_px: field scale of a field the fields CSV gives none (default: the task's).
        crop_um: side of a crop in µm (default: the task's).
        image_size: side of the written crops in pixels.
    """

    verb: ClassVar[str] = "crop-cells"

    task: str = "ana"
    whole_cells: bool = False
    label: str | None = None
    um_per_px: float | None = None
    crop_um: float | None = None
    image_size: int = Field(128, ge=1)


def crop_annotated_cells(
    fields: list[str | Path],
    annotations: str | Path,
    out: str | Path,
    cfg: CropCellsConfig | None = None,
    *,
    progress: bool = True,
    **settings: Any,
) -> CropResult:
    """Crop every labelled box of the annotated fields into the new dataset ``out`` with ``cfg`` (or its settings
    as keywords, see :class:`CropCellsConfig`); see the module docstring."""
    cfg = CropCellsConfig.resolve(cfg, settings)
    task, whole_cells, label, um_per_px = cfg.task, cfg.whole_cells, cfg.label, cfg.um_per_px
    crop_um, image_size = cfg.crop_um, cfg.image_size
    preset = _crop_preset(task, whole_cells)
    annotations = Path(annotations)
    boxes, by = _read_annotations(annotations, label)
    items, unread = read_fields(list(fields), "per-field", None)
    side_um = float(crop_um or preset.crop_um)
    geometry = CropGeometry(side_um, "+".join(preset.classify), "annotated boxes", image_size=image_size)
    with run_folder(out) as out, make_progress(progress) as prog:
        rows, not_cropped = _crop_fields(
            items, boxes, by, annotations, out, prog,
            side_um=side_um, um_per_px=um_per_px or preset.um_per_px, image_size=image_size,
        )  # fmt: skip
        skipped = unread + not_cropped
        table = _write_dataset(out, rows, skipped, geometry)
        cfg.write(out / "crop_cells.yaml")
    counts = table["label"].value_counts().sort_index().to_dict()
    if progress:
        _print_cropped(out, table, counts, skipped)
    return CropResult(out, len(table), {str(c): int(n) for c, n in counts.items()}, skipped)


def _crop_preset(task: str, whole_cells: bool) -> FieldPreset:
    """The preset whose cells are cropped: the task's, or its whole-cell variant (IIF only)."""
    preset = get_preset(task)
    if preset.detector is None:
        raise RunError(f"task {task!r} classifies whole frames; there are no cells to crop")
    if whole_cells:
        if preset.aggregator != "ana":
            raise RunError(
                f"--whole-cells is for IIF (task ana); task {task!r} crops {preset.classify[0]} boxes"
            )
        preset = ANA_WHOLE_CELLS
    return preset


def _read_annotations(annotations: Path, label: str | None) -> tuple[dict[str, Truth], str]:
    """:func:`read_boxes` of an annotation file or folder that must exist; what cannot be read is a
    :class:`RunError`."""
    if not annotations.exists():
        raise RunError(f"--annotations {annotations}: no such file or folder")
    try:
        return read_boxes(annotations, label)
    except ValueError as exc:
        raise RunError(str(exc)) from None


def _crop_fields(
    items: list[FieldInput],
    boxes: dict[str, Truth],
    by: str,
    annotations: Path,
    out: Path,
    prog: Any,
    *,
    side_um: float,
    um_per_px: float,
    image_size: int,
) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Crop the labelled boxes of every field into ``out``, with a progress bar; returns the manifest rows and
    the fields skipped (no boxes in the annotations, or unreadable). ``um_per_px``: the scale of a field that
    does not give its own."""
    rows: list[dict[str, Any]] = []
    skipped: list[Problem] = []
    bar = prog.task("cropping annotated cells", len(items))
    for k, item in enumerate(items):
        key = item.path.stem if by == "stem" else str(item.path.resolve())
        truth = [(lab, b) for lab, b in boxes.get(key, []) if lab]
        if key not in boxes:
            skipped.append(Problem(str(item.path), "no_annotation", f"no boxes for it in {annotations.name}"))
        elif truth:
            try:
                img = read_image(item.path).pixels
            except ImageError as exc:
                skipped.append(Problem(str(item.path), exc.kind, exc.reason))
            else:
                scale = item.um_per_px or um_per_px
                rows += _save_crops(out, k, item, img, truth, side_um / float(scale), image_size)
        bar.advance(1)
    bar.done()
    return rows, skipped


def _save_crops(
    out: Path,
    k: int,
    item: FieldInput,
    img: np.ndarray,
    truth: list[tuple[str, Any]],
    side_px: float,
    image_size: int,
) -> list[dict[str, Any]]:
    """Crop each labelled box of the ``k``-th field (``side_px`` pixels square, resized to ``image_size``) into
    ``out/<label>/``; one manifest row per crop."""
    dets = [Detection(lab, tuple(round(v) for v in b)) for lab, b in truth]  # type: ignore[misc]
    crops = crop_cells(img, dets, side_px, image_size)
    rows = []
    for j, (det, crop) in enumerate(zip(dets, crops, strict=True)):
        folder = out / _safe(det.label)
        folder.mkdir(exist_ok=True)
        name = f"{k:04d}_{_safe(item.path.stem)}_{j:04d}.png"
        Image.fromarray(crop).save(folder / name)
        x0, y0, x1, y1 = det.box
        rows.append(
            {"path": f"{folder.name}/{name}", "label": det.label, "group": item.sample,
             "field": str(item.path), "x0": x0, "y0": y0, "x1": x1, "y1": y1}
        )  # fmt: skip
    return rows


def _write_dataset(
    out: Path, rows: list[dict[str, Any]], skipped: list[Problem], geometry: CropGeometry
) -> pd.DataFrame:
    """``manifest.csv``, ``crop_geometry.json`` and (when a field was skipped) ``skipped.csv``; refuses when no
    box was cropped. Returns the manifest."""
    if not rows:
        raise RunError("no labelled box matched a field: check the paths in the annotations")
    table = pd.DataFrame(rows)
    table.to_csv(out / "manifest.csv", index=False)
    write_json(out / GEOMETRY_FILE, geometry.to_dict())
    if skipped:
        pd.DataFrame([s.__dict__ for s in skipped]).to_csv(out / "skipped.csv", index=False)
    return table


def _print_cropped(out: Path, table: pd.DataFrame, counts: dict[Any, int], skipped: list[Problem]) -> None:
    """Each skipped field with its reason, then how many cells of each label were cropped from how many fields."""
    for s in skipped:
        console.print(f"  [yellow]skipped[/yellow] {s.path}: {s.reason}", highlight=False)
    console.print(
        f"{len(table)} cells from {table['field'].nunique()} fields → {out}: "
        + ", ".join(f"{c} {n}" for c, n in counts.items())
    )


def _safe(name: str) -> str:
    """A file-name-safe form of a label or stem."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "x"


def data_crop_geometry(data: str | Path | None) -> dict | None:
    """The crop geometry a dataset declares (``crop_geometry.json`` beside its manifest), when it has one."""
    if not data:
        return None
    p = Path(data)
    folder = p if p.is_dir() else p.parent
    file = folder / GEOMETRY_FILE
    if not file.is_file():
        return None
    import json

    try:
        return CropGeometry.from_dict(json.loads(file.read_text(encoding="utf-8"))).to_dict()
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{file}: not a crop geometry ({exc})") from None
