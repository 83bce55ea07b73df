"""``lablens analyze --engine ray``: whole fields on Ray Data — detection in CPU tasks, cells in model actors.

Each row of the Ray dataset is one field: a task reads it, finds its objects and crops the cells
(:func:`~lablens.fields.pipeline.detect_field`), a model actor classifies them
(:func:`~lablens.fields.pipeline.classify_field`), and the driver draws the overlay and keeps the rows, in
input order, exactly as the local engine does. Fields travel between workers as Ray objects (inside one
cluster, never from a file). Every node must see the fields at the same paths.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from lablens.errors import RunError
from lablens.fields.pipeline import FieldInput, FieldSpec, FieldWork, classify_field, detect_field
from lablens.infer.ray_engine import RaySettings, RayUnavailable, actor_model, actor_pool, ray_session
from lablens.infer.shard import ModelSpec, load_for_worker


def _detect_row(row: dict[str, Any], *, items: dict[int, FieldInput], spec: FieldSpec) -> dict[str, Any]:
    k = int(row["k"])
    return {"k": k, "work": detect_field(k, items[k], spec)}


class _ClassifyFields:
    """Ray actor: one model; classifies the cells of each field it is given."""

    def __init__(self, spec: ModelSpec) -> None:
        from lablens.infer.gate import QualityGate
        from lablens.infer.predictor import Predictor
        from lablens.quality.reference import ImageReference

        b = load_for_worker(spec)
        self.reference = ImageReference.from_bundle(b)
        self.predictor = Predictor.prepared(
            b,
            logging.getLogger("lablens").warning,  # an actor's log reaches the driver's console
            batch_size=spec.batch_size,
            device=spec.device,
            gate=QualityGate.for_bundle(b, spec.quality, spec.max_level),
            backend=spec.backend,
            threads=spec.threads,
            ood_alpha=spec.ood_alpha,
        )

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        work = row["work"]
        if work.error is None:
            classify_field(work, self.predictor, self.reference)
        return {"k": row["k"], "work": work}


def analyze_on_ray(
    items: list[tuple[int, FieldInput]],
    spec: FieldSpec,
    model: ModelSpec,
    settings: RaySettings | None,
    *,
    on_field: Callable[[FieldWork], None],
) -> dict[str, float]:
    """Detect and classify every field on Ray; ``on_field(work)`` in the driver as each one is done."""
    settings = settings or RaySettings()
    try:
        with ray_session(settings) as (ray, cluster):
            if not items:
                return cluster
            ds = ray.data.from_items([{"k": k} for k, _ in items], override_num_blocks=len(items))
            ds = ds.map(
                _detect_row,
                fn_kwargs={"items": dict(items), "spec": spec},
                num_cpus=settings.decode_cpus,
                memory=256 * 2**20,  # a field, its crops and the detector's working images
            )
            ds = ds.map(
                _ClassifyFields,
                fn_constructor_kwargs={"spec": actor_model(model, settings)},
                **actor_pool(ray, settings),
            )
            for row in ds.iter_rows():
                on_field(row["work"])
            return cluster
    except RayUnavailable as exc:
        raise RunError(str(exc)) from None
