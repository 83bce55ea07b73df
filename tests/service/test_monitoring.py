"""Monitoring: agreement, kappa with CIs over samples, correction rates and held-back shares per model and week."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_monitoring_counts_reviews_per_model_and_week(service: dict) -> None:
    c, tech = service["client"], service["auth"]["technician"]
    ids = []
    for name in ("A", "B"):
        files = [("files", (f"{i}.png", _png(im), "image/png")) for i, im in enumerate(service["images"][:6])]
        doc = c.post("/api/samples", data={"name": name}, files=files, headers=tech).json()
        ids.append([(cell["id"], cell["predicted"]) for cell in doc["cells"]])
    corrected = 0
    for sample in ids:
        for k, (cell, predicted) in enumerate(sample[:4]):
            if k < 3:
                c.post(f"/api/cells/{cell}/review", json={"action": "confirm"}, headers=tech)
            else:  # one correction per sample
                other = next(x for x in ("disc", "ring", "square") if x != predicted)
                c.post(
                    f"/api/cells/{cell}/review", json={"action": "reclassify", "label": other}, headers=tech
                )
                corrected += 1
    rows = c.get("/api/monitoring?bootstrap=100", headers=tech).json()
    assert len(rows) == 1
    row = rows[0]
    assert (
        row["task"] == "blood"
        and row["model_version"] == 1
        and row["n_cells"] == 12
        and row["n_samples"] == 2
    )
    assert row["n_reviewed"] == 8 and row["share"] == {
        "not_evaluable": 0,
        "out_of_distribution": 0,
        "unidentified": 0,
    }
    assert row["agreement"]["percent_agreement"]["value"] == 6 / 8
    lo, hi = row["agreement"]["kappa"]["ci"]
    assert lo <= row["agreement"]["kappa"]["value"] <= hi
    rates = row["correction_rate"]
    assert (
        sum(r["reviewed"] for r in rates.values()) == 8 and sum(r["corrected"] for r in rates.values()) == 2
    )
    assert all(r["rate"] == round(r["corrected"] / r["reviewed"], 4) for r in rates.values())
    assert c.get("/api/monitoring?task=ana", headers=tech).json() == []
