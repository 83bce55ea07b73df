"""``lablens export-reviews``: the technicians' labels as a training set (ImageFolder + manifest CSV).

Every reviewed cell (confirmed or reclassified) of a signed sample becomes ``OUT/<label>/<sha256>.png`` and a row
of ``OUT/manifest.csv`` with ``path,label,group`` (group = the sample, so a retraining split never puts cells of
one sample on both sides) plus what the model had said. ``lablens train OUT/manifest.csv`` reads it as it is.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
from sqlalchemy import select

from lablens.errors import RunError
from lablens.service.db import open_database, sessions
from lablens.service.documents import review_score
from lablens.service.models import Cell, Sample
from lablens.service.storage import image_path
from lablens.workflows.run_folder import check_new_folder, run_folder


def export_reviews(
    db_url: str, storage: str | Path, out: str | Path, signed_only: bool = True
) -> pd.DataFrame:
    """Write the reviewed cells to ``out`` (a new folder) and return the manifest."""
    storage = Path(storage)
    check_new_folder(Path(out), "choose a new folder")
    engine = open_database(db_url)
    rows = []
    with run_folder(out, hint="choose a new folder") as out, sessions(engine)() as session:
        q = select(Cell, Sample).join(Sample).where(Cell.label.is_not(None)).order_by(Cell.id)
        if signed_only:
            q = q.where(Sample.status == "signed")
        for cell, sample in session.execute(q).all():
            src = image_path(storage, cell.image_sha256)
            if not src.is_file():
                raise RunError(f"{src}: the image of cell {cell.id} is missing from the storage folder")
            rel = Path(cell.label) / f"{cell.image_sha256}.png"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out / rel)
            rows.append(
                {
                    "path": rel.as_posix(),
                    "label": cell.label,
                    "group": f"sample-{sample.id}",
                    "sample": sample.name,
                    "predicted": cell.predicted,
                    "confidence": cell.confidence,
                    "review_score": review_score(json.loads(cell.probabilities)),
                    "status": cell.status,
                    "signed_by": sample.signed_by,
                    "bundle_hash": sample.bundle_hash,
                }
            )
        _manifest(rows).to_csv(out / "manifest.csv", index=False)
    engine.dispose()
    return _manifest(rows)


def _manifest(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        rows,
        columns=[
            "path",
            "label",
            "group",
            "sample",
            "predicted",
            "confidence",
            "review_score",
            "status",
            "signed_by",
            "bundle_hash",
        ],
    )
