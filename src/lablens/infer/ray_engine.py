"""The Ray engine: the same shards as a Ray Data job, on this machine or on a Ray cluster.

The pipeline is ``shards → decode (CPU tasks) → classify + write (model actors) → driver``. Ray Data schedules
it, streams with back-pressure (a bounded number of decoded shards in flight) and retries failed tasks; each
row of the Ray dataset is one shard, so the model actors classify exactly the batches the local engine does and
both engines write the same rows. The driver records each completed shard, so resuming works the same way.

Every node must see the job folder (``--out``) and the images at the same paths: a shared file system, as
archive jobs on a cluster use. Decoded shards travel between tasks and actors as NumPy ``.npz`` bytes (never a
pickle of lablens objects). Install with ``pip install "lablens[ray]"``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from lablens.errors import LablensError
from lablens.infer.decode import DecodedShard, Preprocessing, decode_shard
from lablens.infer.job import JobFolder
from lablens.infer.shard import ModelSpec, ShardClassifier


class RayUnavailable(LablensError):
    """Ray is not installed or the cluster cannot be reached; the message says what to do."""


@dataclass(frozen=True)
class RaySettings:
    """Where to run and how to spread the work.

    ``address``: a cluster (``ray://host:10001`` or ``auto``) or None to start a local one with ``num_cpus``;
    ``model_actors`` model copies, each with ``actor_cpus`` CPUs (ONNX Runtime threads) and ``actor_gpus`` GPUs
    (torch on the GPU when > 0); decoding runs as tasks of ``decode_cpus`` CPUs each.
    """

    address: str | None = None
    num_cpus: int | None = None
    model_actors: int = 1
    actor_cpus: float = 1.0
    actor_gpus: float = 0.0
    decode_cpus: float = 1.0


def import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayUnavailable(
            '--engine ray needs Ray Data: pip install "lablens[ray]" (or use the default --engine local)'
        ) from None
    return ray


class _Classify:
    """Ray actor: one model; classifies a decoded shard and writes its Parquet part."""

    def __init__(self, out: str, spec: ModelSpec) -> None:
        self.job = JobFolder(out)
        self.classifier = ShardClassifier(spec)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        decoded = DecodedShard.from_bytes(row["data"])
        entry = self.job.write_part(decoded.shard, self.classifier(decoded), time.time() - float(row["t0"]))
        return {"entry": json.dumps(entry)}


def run_ray(
    job: JobFolder,
    shard_indices: Sequence[int],
    shard_size: int,
    spec: ModelSpec,
    prep: Preprocessing,
    settings: RaySettings,
    *,
    on_shard: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Run the pending shards on Ray; ``on_shard(entry)`` in the driver as each completes. Returns facts about
    the cluster used (for the summary)."""
    with ray_session(settings) as (ray, cluster):
        if not shard_indices:
            return cluster
        actor_spec = actor_model(spec, settings)
        ds = ray.data.from_items(
            [{"shard": int(i)} for i in shard_indices], override_num_blocks=len(shard_indices)
        )
        ds = ds.map(
            _decode_row,
            fn_kwargs={"out": str(job.out), "shard_size": shard_size, "prep": prep},
            num_cpus=settings.decode_cpus,
            # what a decode task holds (its decoded shard, twice while serialising) tells Ray how many fit on a
            # node; the request also keeps decoding in its own tasks (Ray fuses maps whose resources match)
            memory=_decode_memory(shard_size, prep),
        )
        ds = ds.map(
            _Classify,
            fn_constructor_kwargs={"out": str(job.out), "spec": actor_spec},
            **actor_pool(ray, settings),
        )
        for row in ds.iter_rows():
            on_shard(json.loads(row["entry"]))
        return cluster


@contextmanager
def ray_session(settings: RaySettings) -> Iterator[tuple[Any, dict[str, float]]]:
    """Ray connected (to ``settings.address``, or a local cluster started here and stopped on exit), Ray Data
    quiet (lablens draws its own progress); yields the module and the cluster's CPUs and GPUs."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(
                address=settings.address,
                num_cpus=settings.num_cpus if settings.address is None else None,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = settings.address or "a local cluster"
            raise RayUnavailable(f"cannot start or reach Ray at {where}: {exc}") from None
    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.verbose_stats_logs = False
        cluster = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        _check_fits(settings, cluster)
        yield ray, cluster
    finally:
        if started_here:
            ray.shutdown()


def _check_fits(settings: RaySettings, cluster: dict[str, float]) -> None:
    """Refuse settings under which the pipeline cannot run (Ray would wait for resources for ever)."""
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    held = settings.model_actors * settings.actor_cpus
    if cpus - held < settings.decode_cpus:
        raise RayUnavailable(
            f"{settings.model_actors} model actor(s) × {settings.actor_cpus:g} CPUs leave no CPU for decoding on "
            f"this cluster ({cpus:g} CPUs); lower --actors or --actor-cpus"
        )
    if settings.model_actors * settings.actor_gpus > gpus:
        raise RayUnavailable(
            f"{settings.model_actors} model actor(s) × {settings.actor_gpus:g} GPUs: the cluster has {gpus:g} GPUs"
        )


def actor_pool(ray: Any, settings: RaySettings) -> dict[str, Any]:
    """The ``map`` arguments of the model actors."""
    return {
        "compute": ray.data.ActorPoolStrategy(size=settings.model_actors),
        "num_cpus": settings.actor_cpus,
        "num_gpus": settings.actor_gpus,
    }


def actor_model(spec: ModelSpec, settings: RaySettings) -> ModelSpec:
    """What each model actor builds: on CPU actors the model runs with as many threads as the actor has CPUs."""
    if settings.actor_gpus > 0:
        return spec
    return replace(spec, device="cpu", threads=max(1, int(settings.actor_cpus)))


def _decode_row(row: dict[str, Any], *, out: str, shard_size: int, prep: Preprocessing) -> dict[str, Any]:
    """Ray task body: read one shard's planned paths and decode them (the shard's clock starts here)."""
    start = time.time()
    decoded = decode_shard(JobFolder(out).shard(int(row["shard"]), shard_size), prep, workers=1)
    return {"shard": int(row["shard"]), "t0": start, "data": decoded.to_bytes()}


def _decode_memory(shard_size: int, prep: Preprocessing) -> int:
    side = prep.size**2 + (prep.gate_size or 0) ** 2
    return 2 * shard_size * side * 3 + 256 * 2**20
