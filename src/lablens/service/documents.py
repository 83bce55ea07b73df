"""The JSON the API returns for samples, cells and audit events."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from lablens.infer.acquisition import uncertainty
from lablens.service.models import AuditEvent, Cell, Sample


def queue(c: Cell, min_confidence: float) -> str:
    """Where a cell waits: ``reviewed``; ``not_evaluable`` or ``out_of_distribution`` (the model gave no call);
    ``unidentified`` (below the confidence threshold); else ``review``."""
    if c.status != "pending":
        return "reviewed"
    gate = c.gate or "classified"
    if gate != "classified":
        return gate
    return "unidentified" if c.confidence < min_confidence else "review"


def _flags(stored: str | None) -> tuple[list[str], dict[str, str]]:
    """Flag names and their reasons (cells stored before flags had reasons hold bare names)."""
    names, reasons = [], {}
    for f in json.loads(stored or "[]"):
        if isinstance(f, str):
            names.append(f)
        else:
            names.append(f["flag"])
            reasons[f["flag"]] = f["reason"]
    return names, reasons


def review_score(probabilities: dict[str, float]) -> float | None:
    """How much a technician's look at the cell would teach the model: the margin uncertainty of its calibrated
    probabilities (:func:`lablens.infer.acquisition.uncertainty`, the score ``lablens suggest`` ranks by), in
    [0, 1]; None for a cell given no probabilities (held back by the quality gate)."""
    if not probabilities:
        return None
    return round(float(uncertainty(np.asarray([list(probabilities.values())]), "margin")[0]), 4)


def cell_doc(c: Cell, min_confidence: float) -> dict[str, Any]:
    where = queue(c, min_confidence)
    flags, reasons = _flags(c.flags)
    probabilities = json.loads(c.probabilities)
    return {
        "id": c.id,
        "name": c.original_name,
        "predicted": c.predicted,
        "confidence": round(c.confidence, 4),
        "probabilities": probabilities,
        "review_score": review_score(probabilities),
        "label": c.label,
        "status": c.status,
        "final": c.label or (c.predicted if where in ("review", "reviewed") else None),
        "unidentified": where == "unidentified",
        "queue": where,
        "gate": c.gate or "classified",
        "quality_score": None if c.quality_score is None else round(c.quality_score, 4),
        "ood_score": None if c.ood_score is None else round(c.ood_score, 4),
        "bundle_hash": c.bundle_hash,
        "flags": flags,  # relative to the bundle's training images (lablens.quality.reference)
        "flag_reasons": reasons,
        "source": json.loads(c.source) if c.source else None,
        "attention": None if c.attention is None else round(c.attention, 4),
        "image": f"/api/cells/{c.id}/image",
    }


def sample_doc(s: Sample, min_confidence: float, with_cells: bool = True) -> dict[str, Any]:
    cells = [cell_doc(c, min_confidence) for c in s.cells]
    counts: dict[str, int] = {}
    for c in cells:
        if c["final"] is not None:  # neither unidentified nor held back by the quality gate or OOD guard
            counts[c["final"]] = counts.get(c["final"], 0) + 1
    n = sum(counts.values())
    doc: dict[str, Any] = {
        "id": s.id,
        "name": s.name,
        "status": s.status,
        "task": s.task,
        "bundle_hash": s.bundle_hash,
        "created_by": s.created_by,
        "created_at": s.created_at.isoformat(),
        "signed_by": s.signed_by,
        "signed_at": s.signed_at.isoformat() if s.signed_at else None,
        "n_cells": len(cells),
        "n_reviewed": sum(c["status"] != "pending" for c in cells),
        "n_unidentified": sum(c["unidentified"] for c in cells),
        "n_not_evaluable": sum(c["queue"] == "not_evaluable" for c in cells),
        "n_out_of_distribution": sum(c["queue"] == "out_of_distribution" for c in cells),
        "ood": json.loads(s.ood) if s.ood else None,
        "counts": counts,
        "percent": {k: round(100 * v / n, 2) for k, v in sorted(counts.items())} if n else {},
        "call": json.loads(s.call) if s.call else None,
    }
    if with_cells:
        doc["cells"] = cells
    return doc


def event_doc(e: AuditEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": e.at,
        "actor": e.actor,
        "action": e.action,
        "entity": e.entity,
        "entity_id": e.entity_id,
        "before": json.loads(e.before),
        "after": json.loads(e.after),
        "hash": e.hash,
    }
