"""Recognising data that is not a labelled cell folder: Pascal VOC and COCO annotations of whole fields.

A folder of fields with boxes looks like an ImageFolder to a naive reader (``JPEGImages/`` becomes the one
"class"). :func:`annotation_layout` says what such a folder is, so that ``validate-data`` and ``train`` can name
the verb that reads it instead of training on nonsense.
"""

from __future__ import annotations

import json
from pathlib import Path

VOC = "Pascal VOC"
COCO = "COCO"


def _coco_files(folder: Path) -> list[Path]:
    """JSON files in ``folder`` (or its ``annotations/``) whose top level holds COCO's images + annotations."""
    found = []
    for p in sorted([*folder.glob("*.json"), *(folder / "annotations").glob("*.json")])[:20]:
        try:
            if p.stat().st_size > 200 * 2**20:
                continue
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(doc, dict) and {"images", "annotations"} <= set(doc):
            found.append(p)
    return found


def annotation_layout(folder: str | Path) -> tuple[str, str] | None:
    """``(kind, hint)`` when ``folder`` holds field annotations (VOC or COCO) rather than labelled cells; the hint
    names the lablens verbs that read it. None otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if (folder / "Annotations").is_dir() and any((folder / "Annotations").glob("*.xml")):
        images = folder / "JPEGImages" if (folder / "JPEGImages").is_dir() else folder
        return VOC, (
            f"whole fields with boxes ({folder / 'Annotations'}/*.xml), not labelled cells: cut the cells out with "
            f"`lablens crop-cells {images} --annotations {folder / 'Annotations'} --task blood --um-per-px SCALE "
            "--out CELLS` (then `lablens train CELLS`), or use the boxes as detection truth "
            f"(`lablens fit-verifier {images} --truth {folder / 'Annotations'} -o wbc.json`, `lablens train-detector`)"
        )
    coco = _coco_files(folder)
    if coco:
        return COCO, (
            f"whole fields with COCO boxes ({coco[0].name}), not labelled cells: cut the cells out with "
            f"`lablens crop-cells FIELDS --annotations {coco[0]} --label ATTRIBUTE --out CELLS` (then "
            "`lablens train CELLS`), or train a detector with `lablens train-detector`"
        )
    return None
