"""Boxes drawn on fields: Pascal VOC XML files, COCO JSON, box CSVs and lablens phantom ``cells.csv``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from lablens.data.tables import number, read_text_csv
from lablens.errors import SettingError

Truth = list[tuple[str, tuple[float, float, float, float]]]
BCCD_NAMES = {"WBC": "wbc", "RBC": "rbc", "Platelets": "platelet"}  # BCCD's VOC names → detector labels


def read_voc(path: str | Path, rename: dict[str, str] | None = None) -> Truth:
    """Objects of one Pascal VOC annotation as ``(label, (x0, y0, x1, y1))``.

    VOC boxes are 1-based and inclusive; they are converted to 0-based exclusive ``x1``/``y1`` by keeping
    ``xmin - 1`` and ``xmax``. ``rename`` maps VOC names to detector labels (``{"WBC": "wbc"}``); names it
    does not list are lower-cased. Objects marked ``difficult`` are kept (BCCD marks none).
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise SettingError(f"{path}: not a readable Pascal VOC file ({exc})") from exc
    rename = rename or {}
    out: Truth = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if bb is None:
            raise SettingError(f"{path}: object {name!r} has no bndbox")
        x0, y0, x1, y1 = (float(bb.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
        out.append((rename.get(name, name.lower()), (x0 - 1, y0 - 1, x1, y1)))
    return out


def read_phantom_cells(cells_csv: str | Path, rename: dict[str, str] | None = None) -> dict[str, Truth]:
    """Per field path (as in the manifest), the objects of a phantom ``cells.csv`` (``--fields``)."""
    df = read_text_csv(cells_csv)
    rename = rename or {}
    out: dict[str, Truth] = {}
    for i, row in enumerate(df.to_dict("records")):
        lab = rename.get(row["label"], row["label"])
        box = tuple(number(row[k], k, f"{cells_csv}, row {i + 2}") or 0.0 for k in ("x0", "y0", "x1", "y1"))
        out.setdefault(row["path"], []).append((lab, box))
    return out


def read_coco(path: str | Path, label_attribute: str | None = None) -> dict[str, Truth]:
    """Per image ``file_name``, the boxes of a COCO annotation file as ``(label, (x0, y0, x1, y1))``.

    The label is the category name, or the annotation's ``attributes[label_attribute]`` when given (e.g. a
    pattern recorded per cell).
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        names = {c["id"]: str(c["name"]) for c in doc.get("categories", [])}
        files = {im["id"]: str(im["file_name"]) for im in doc["images"]}
        out: dict[str, Truth] = {name: [] for name in files.values()}
        for a in doc["annotations"]:
            x, y, w, h = (float(v) for v in a["bbox"])
            label = names.get(a.get("category_id"), "")
            if label_attribute is not None:
                label = str((a.get("attributes") or {}).get(label_attribute, ""))
            out[files[a["image_id"]]].append((label, (x, y, x + w, y + h)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingError(f"{path}: not a readable COCO annotation file ({exc})") from None
    return out


def read_box_csv(path: str | Path, label_column: str | None = "label") -> dict[str, Truth]:
    """Per image path (as written in the CSV), the boxes of a ``path, <label>, x0, y0, x1, y1`` CSV
    (``label_column=None``: boxes without labels, each labelled ``""``)."""
    df = read_text_csv(path)
    need = {"path", "x0", "y0", "x1", "y1"} | ({label_column} if label_column else set())
    if not need <= set(df.columns):
        raise SettingError(f"{path}: a box CSV needs columns {', '.join(sorted(need))}")
    out: dict[str, Truth] = {}
    for i, row in enumerate(df.to_dict("records")):
        box = tuple(number(row[k], k, f"{path}, row {i + 2}") or 0.0 for k in ("x0", "y0", "x1", "y1"))
        out.setdefault(row["path"], []).append((row[label_column] if label_column else "", box))
    return out
