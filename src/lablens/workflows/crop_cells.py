"""``lablens crop-cells``: single-cell training images from annotated fields, cut the way analysis cuts them.

Boxes with a per-cell label (a box CSV ``path, label, x0, y0, x1, y1``, a COCO JSON, or a folder of Pascal VOC
files named like the fields) are cropped around each box centre at the task's physical crop size
(:func:`~lablens.fields.crops.crop_cells`, the cropper ``lablens analyze`` uses). The result is a dataset
``lablens train`` reads directly: ``<label>/<image>.png``, ``manifest.csv`` (``path, label, group`` = the
field's sample, plus the field and box) and ``crop_geometry.json``, which ``lablens train`` records in the bundle
so that ``lablens analyze`` can check it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image

from lablens.data.io import ImageError, read_image
from lablens.data.validate import Problem
from lablens.fields.annotations import Truth, read_box_csv, read_coco, read_voc
from lablens.fields.cell_crops import CropGeometry
from lablens.fields.crops import crop_cells
from lablens.fields.detection import Detection
from lablens.fields.presets import ANA_WHOLE_CELLS, get_preset
from lablens.progress import console, make_progress
from lablens.workflows.analyze import read_fields
from lablens.workflows.common import RunError, write_json
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


def crop_annotated_cells(
    fields: list[str | Path],
    annotations: str | Path,
    out: str | Path,
    *,
    task: str = "ana",
    whole_cells: bool = False,
    label: str | None = None,
    um_per_px: float | None = None,
    crop_um: float | None = None,
    image_size: int = 128,
    progress: bool = True,
) -> CropResult:
    """Crop every labelled box of the annotated fields (see the module docstring)."""
    preset = get_preset(task)
    if preset.detector is None:
        raise RunError(f"task {task!r} classifies whole frames; there are no cells to crop")
    if whole_cells:
        if preset.aggregator != "ana":
            raise RunError(
                f"--whole-cells is for IIF (task ana); task {task!r} crops {preset.classify[0]} boxes"
            )
        preset = ANA_WHOLE_CELLS
    annotations = Path(annotations)
    if not annotations.exists():
        raise RunError(f"--annotations {annotations}: no such file or folder")
    try:
        boxes, by = read_boxes(annotations, label)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    items, skipped = read_fields(list(fields), "per-field", None)
    side_um = float(crop_um or preset.crop_um)
    rows = []
    with run_folder(out) as out, make_progress(progress) as prog:
        bar = prog.task("cropping annotated cells", len(items))
        for k, item in enumerate(items):
            key = item.path.stem if by == "stem" else str(item.path.resolve())
            truth = [(lab, b) for lab, b in boxes.get(key, []) if lab]
            if key not in boxes:
                skipped.append(
                    Problem(str(item.path), "no_annotation", f"no boxes for it in {annotations.name}")
                )
            scale = item.um_per_px or um_per_px or preset.um_per_px
            if not truth or key not in boxes:
                bar.advance(1)
                continue
            try:
                img = read_image(item.path).pixels
            except ImageError as exc:
                skipped.append(Problem(str(item.path), exc.kind, exc.reason))
                bar.advance(1)
                continue
            dets = [Detection(lab, tuple(round(v) for v in b)) for lab, b in truth]  # type: ignore[misc]
            crops = crop_cells(img, dets, side_um / float(scale), image_size)
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
            bar.advance(1)
        bar.done()
        if not rows:
            raise RunError("no labelled box matched a field: check the paths in the annotations")
        table = pd.DataFrame(rows)
        table.to_csv(out / "manifest.csv", index=False)
        geometry = CropGeometry(side_um, "+".join(preset.classify), "annotated boxes", image_size=image_size)
        write_json(out / GEOMETRY_FILE, geometry.to_dict())
        if skipped:
            pd.DataFrame([s.__dict__ for s in skipped]).to_csv(out / "skipped.csv", index=False)
    counts = table["label"].value_counts().sort_index().to_dict()
    if progress:
        for s in skipped:
            console.print(f"  [yellow]skipped[/yellow] {s.path}: {s.reason}", highlight=False)
        console.print(
            f"{len(table)} cells from {table['field'].nunique()} fields → {out}: "
            + ", ".join(f"{c} {n}" for c, n in counts.items())
        )
    return CropResult(out, len(table), {str(c): int(n) for c, n in counts.items()}, skipped)


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
