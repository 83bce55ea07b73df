"""Monitoring: how the model in service agrees with the technicians, per task, model version and week.

For every (task, model, ISO week of submission) the cells are counted with where they went: held back by the
quality gate (``not_evaluable``) or the OOD guard (``out_of_distribution``), below the confidence threshold
(``unidentified``), or given a call. Among the cells given a call that a technician reviewed: the agreement
and Cohen's kappa between model and technician with 95 % group-bootstrap CIs (resampling whole samples, as
cells of one sample are not independent), and per predicted class the correction rate (reclassified /
reviewed). A falling kappa or a rising share of held-back cells shows drift before it hurts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from lablens.evaluate.agreement import agreement_statistic
from lablens.evaluate.bootstrap import ci_entry, group_bootstrap
from lablens.service.models import Cell, Model, Sample

N_BOOT = 500
QUEUES = ("not_evaluable", "out_of_distribution", "unidentified")


def _week(when: Any) -> str:
    year, week, _ = when.isocalendar()
    return f"{year}-W{week:02d}"


def _agreement(pred: list[str], truth: list[str], samples: list[int], n_boot: int) -> dict[str, Any]:
    labels = sorted(set(pred) | set(truth))
    code = {c: i for i, c in enumerate(labels)}
    pair = {"model": (np.array([code[p] for p in pred]), np.array([code[t] for t in truth]))}
    stat = agreement_statistic(pair, len(labels))
    point = {k: float(v[0]) for k, v in stat(np.ones((1, len(pred)))).items()}
    ci = group_bootstrap(stat, np.asarray(samples), len(pred), n_boot=n_boot, seed=0) if n_boot else {}
    return {
        name: ci_entry(point[f"model/{name}"], ci.get(f"model/{name}"), n_boot=n_boot)
        for name in ("percent_agreement", "kappa")
    }


def monitoring(
    session: Session, min_confidence: float, task: str | None = None, n_boot: int = N_BOOT
) -> list[dict[str, Any]]:
    """One row per task, model version and week, oldest first (see the module docstring)."""
    q = select(Cell, Sample).join(Sample)
    if task is not None:
        q = q.where(Sample.task == task)
    versions = {(m.task, m.bundle_hash): m.version for m in session.execute(select(Model)).scalars()}
    any_task = {
        m.bundle_hash: m.version for m in session.execute(select(Model).where(Model.task == "*")).scalars()
    }
    groups: dict[tuple[str, str, str], list[tuple[Cell, Sample]]] = defaultdict(list)
    for cell, sample in session.execute(q).all():
        bundle = cell.bundle_hash or sample.bundle_hash
        groups[(sample.task, bundle, _week(sample.created_at))].append((cell, sample))
    rows = []
    for (task_name, bundle, week), items in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])
    ):
        n = len(items)
        held = defaultdict(int)
        pred, truth, samples = [], [], []
        reviewed_by_class: dict[str, list[int]] = defaultdict(
            lambda: [0, 0]
        )  # predicted → [reviewed, corrected]
        for cell, sample in items:
            gate = cell.gate or "classified"
            if gate != "classified":
                held[gate] += 1
                continue
            if cell.confidence < min_confidence:
                held["unidentified"] += 1
                continue
            if cell.label is None:
                continue
            pred.append(cell.predicted)
            truth.append(cell.label)
            samples.append(sample.id)
            counts = reviewed_by_class[cell.predicted]
            counts[0] += 1
            counts[1] += int(cell.label != cell.predicted)
        row: dict[str, Any] = {
            "task": task_name,
            "model_version": versions.get((task_name, bundle), any_task.get(bundle)),
            "bundle_hash": bundle,
            "week": week,
            "n_cells": n,
            "n_samples": len({s.id for _, s in items}),
            "share": {k: round(held[k] / n, 4) for k in QUEUES},
            "n_reviewed": len(pred),
            "agreement": _agreement(pred, truth, samples, n_boot) if pred else None,
            "correction_rate": {
                c: {"reviewed": r, "corrected": k, "rate": round(k / r, 4)}
                for c, (r, k) in sorted(reviewed_by_class.items())
            },
        }
        rows.append(row)
    return rows
