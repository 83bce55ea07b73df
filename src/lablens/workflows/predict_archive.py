"""``lablens predict BUNDLE SOURCES… --out DIR``: an archive of images → sharded Parquet, streaming and resumable.

Sources (folders, globs, CSV manifests, lists of paths; :mod:`lablens.infer.sources`) are planned into shards
of ``shard_size`` inputs when the job begins; each shard is decoded, classified in batches and written as one
Parquet part with one row per input (:mod:`lablens.infer.shard`): path, sha256, status, top-k classes with
calibrated probabilities, quality score (with a gate), TTA views, bundle hash, and the reason for a skipped file.
The same command after a crash resumes: completed shards are kept, the others run (:mod:`lablens.infer.job`).
``engine="local"`` runs in this process; ``"ray"`` runs the same shards as a Ray Data job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lablens.errors import RunError
from lablens.infer.decode import Preprocessing
from lablens.infer.job import JobError, JobFolder, JobInfo, totals
from lablens.infer.ood import DEFAULT_ALPHA, OodGuard
from lablens.infer.predictor import CLASSIFIED
from lablens.infer.shard import ModelSpec, ShardClassifier
from lablens.infer.sources import SourceError, iter_paths
from lablens.nn.tta import TtaPolicy
from lablens.progress import console, make_progress
from lablens.workflows.engine_options import ENGINES
from lablens.workflows.printing import warn

MAX_SHOWN = 20  # skipped files named on the console; every one is a row with status 'skipped' and its reason


@dataclass
class ArchiveResult:
    """The job's summary (as written to ``DIR/_SUCCESS``) and where its rows are."""

    out: Path
    summary: dict[str, Any]

    @property
    def parts(self) -> list[Path]:
        return sorted(self.out.glob("part-*.parquet"))


@dataclass(frozen=True)
class _ShardRun:
    """What this run of the pending shards gave: every shard's entry (the resumed ones first), the rows it
    classified, its time and the Ray cluster's facts (empty for the local engine)."""

    entries: list[dict[str, Any]]
    new_rows: int
    seconds: float
    cluster: dict[str, Any]


def predict_archive(
    bundle: str | Path,
    sources: Iterable[str | Path],
    out: str | Path,
    *,
    top_k: int = 3,
    batch_size: int = 64,
    device: str = "auto",
    quality: str | Path | None = None,
    max_level: float = 2.5,
    backend: str = "auto",
    tta: TtaPolicy | None = None,
    ood_alpha: float | None = DEFAULT_ALPHA,
    engine: str = "local",
    shard_size: int = 1024,
    workers: int = 2,
    ray: Any = None,
    progress: bool = True,
) -> ArchiveResult:
    """Classify every input of ``sources`` into Parquet shards in the folder ``out`` (resuming a killed run).

    ``workers``: decoding threads of the local engine. ``ray``: :class:`~lablens.infer.ray_engine.RaySettings`
    for ``engine="ray"``. ``ood_alpha``: the out-of-distribution guard's flag rate (None: off).
    """
    out = _checked_out(out, engine, ray, top_k, shard_size, batch_size, workers)
    quality_path = str(quality) if quality is not None else None
    spec = ModelSpec(
        str(bundle), quality_path, max_level, top_k, batch_size, device, backend, tta, ood_alpha=ood_alpha
    )
    classifier = _classifier(spec)
    source_list = [str(s) for s in sources]
    settings = _job_settings(classifier, quality, max_level, source_list)
    job = JobFolder(out)
    if (done := _finished_job(job, settings, shard_size)) is not None:
        if progress:
            console.print(f"{out}: this job is already complete ({done['images']} images); nothing to do")
        return ArchiveResult(out, done)
    info = _prepare_job(job, settings, source_list, shard_size)
    completed = job.completed()
    pending = [i for i in range(info.n_shards) if i not in completed]
    shard_run = _run_shards(
        job, pending, list(completed.values()), info.n_images, classifier, spec,
        engine=engine, shard_size=shard_size, workers=workers, ray=ray, progress=progress,
    )  # fmt: skip
    summary = _summary(out, shard_run, info, len(completed), classifier, engine=engine, ray=ray)
    job.finish(summary)
    if progress:
        _print_summary(out, summary)
    return ArchiveResult(out, summary)


def _checked_out(
    out: str | Path, engine: str, ray: Any, top_k: int, shard_size: int, batch_size: int, workers: int
) -> Path:
    """``out`` as a path, once the engine, its settings, the sizes and the output folder are checked."""
    if engine not in ENGINES:
        raise RunError(f"--engine {engine!r}: use local or ray")
    if engine != "ray" and ray is not None:
        raise RunError("Ray settings (--ray-address, --actors …) apply only with --engine ray")
    if top_k < 1 or shard_size < 1 or batch_size < 1 or workers < 1:
        raise RunError("--top-k, --shard-size, --batch-size and --workers must be at least 1")
    out = Path(out)
    if out.suffix.lower() in (".csv", ".json", ".parquet"):
        raise RunError(f"{out}: an archive job writes a folder of Parquet shards; give a folder as --out")
    return out


def _classifier(spec: ModelSpec) -> ShardClassifier:
    """The classifier of ``spec`` in this process; a bundle it cannot use is a one-line :class:`RunError`."""
    try:
        return ShardClassifier(spec, warn)
    except ValueError as exc:
        raise RunError(str(exc)) from None


def _job_settings(
    classifier: ShardClassifier, quality: str | Path | None, max_level: float, sources: list[str]
) -> dict[str, Any]:
    """The settings that make a job: a resume must find them unchanged."""
    guard = classifier.predictor.ood
    return {
        "bundle_hash": classifier.bundle.hash,
        "quality_hash": classifier.gate.bundle.hash if quality is not None and classifier.gate else None,
        "max_level": max_level if classifier.gate is not None else None,
        "top_k": classifier.top_k,
        "tta": classifier.predictor.policy.as_dict(),
        "ood": guard.describe() if guard is not None else None,
        "sources": sources,
    }


def _finished_job(job: JobFolder, settings: dict[str, Any], shard_size: int) -> dict[str, Any] | None:
    """The summary of the job in ``job`` when it is already complete with these settings (raising, naming a
    changed setting, when it is another job); ``None`` while it is not complete."""
    try:
        if (done := job.success()) is not None:
            job.prepare(settings, [], shard_size)  # the same job? (raises naming a changed setting)
        return done
    except (JobError, SourceError) as exc:
        raise RunError(str(exc)) from None


def _prepare_job(job: JobFolder, settings: dict[str, Any], sources: list[str], shard_size: int) -> JobInfo:
    """Plan the shards of ``sources`` (or check the plan of the job being resumed); refuses finding no image."""
    try:
        info = job.prepare(settings, iter_paths(sources), shard_size)
    except (JobError, SourceError) as exc:
        raise RunError(str(exc)) from None
    if info.n_images == 0:
        raise RunError("no image files found in the given sources")
    return info


def _run_shards(
    job: JobFolder,
    pending: list[int],
    resumed: list[dict[str, Any]],
    n_images: int,
    classifier: ShardClassifier,
    spec: ModelSpec,
    *,
    engine: str,
    shard_size: int,
    workers: int,
    ray: Any,
    progress: bool,
) -> _ShardRun:
    """Classify the ``pending`` shards with a progress bar, recording each finished one in the job and naming its
    first skipped files; ``resumed``: the entries of the shards an earlier run completed."""
    prep = classifier.preprocessing()
    entries = list(resumed)
    t0 = time.perf_counter()
    with make_progress(progress) as prog:
        task = prog.task("predict", n_images)
        task.update(sum(e["rows"] for e in entries))
        new_rows = shown = 0

        def on_shard(entry: dict[str, Any]) -> None:
            nonlocal new_rows, shown
            job.record(entry)
            entries.append(entry)
            new_rows += entry["rows"]
            for path, kind, reason in entry["skipped_examples"]:
                if shown < MAX_SHOWN and progress:
                    prog.log(f"  [yellow]skipped[/yellow] {path}: {reason} [dim]({kind})[/dim]")
                shown += 1
            rate = new_rows / max(time.perf_counter() - t0, 1e-9)
            task.advance(entry["rows"], **{"img/s": round(rate, 1)})

        cluster = _run_engine(
            engine,
            job,
            pending,
            shard_size,
            classifier,
            spec,
            prep,
            workers=workers,
            ray=ray,
            on_shard=on_shard,
        )
        task.done()
    return _ShardRun(entries, new_rows, time.perf_counter() - t0, cluster)


def _run_engine(
    engine: str,
    job: JobFolder,
    pending: list[int],
    shard_size: int,
    classifier: ShardClassifier,
    spec: ModelSpec,
    prep: Preprocessing,
    *,
    workers: int,
    ray: Any,
    on_shard: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Run the ``pending`` shards on ``engine``; the facts about the Ray cluster used (empty for local)."""
    if engine == "local":
        from lablens.infer.local_engine import run_local

        run_local(job, job.shards(pending, shard_size), classifier, prep, workers=workers, on_shard=on_shard)
        return {}
    from lablens.infer.ray_engine import RaySettings, RayUnavailable, run_ray

    try:
        return run_ray(job, pending, shard_size, spec, prep, ray or RaySettings(), on_shard=on_shard)
    except RayUnavailable as exc:
        raise RunError(str(exc)) from None


def _summary(
    out: Path,
    shard_run: _ShardRun,
    info: JobInfo,
    n_resumed: int,
    classifier: ShardClassifier,
    *,
    engine: str,
    ray: Any,
) -> dict[str, Any]:
    """The job's summary (written to ``DIR/_SUCCESS``): the totals over every shard and what this run did."""
    gpu_actors = engine == "ray" and ray is not None and ray.actor_gpus > 0
    seconds, new_rows = shard_run.seconds, shard_run.new_rows
    return {
        **totals(shard_run.entries),
        "shards": info.n_shards,
        "shards_resumed": n_resumed,
        "bundle_hash": classifier.bundle.hash,
        "tta": classifier.predictor.policy.as_dict(),
        "engine": engine,
        "backend": "torch" if gpu_actors else classifier.predictor.backend,
        "cluster": shard_run.cluster or None,
        "seconds_this_run": round(seconds, 2),
        "images_this_run": new_rows,
        "images_per_second": round(new_rows / seconds, 1) if seconds > 0 else None,
        "ood_verdict": _ood_verdict(out, classifier.predictor.ood),
    }


def _ood_verdict(out: Path, guard: OodGuard | None) -> dict[str, Any] | None:
    """The guard's verdict on the whole job, from the rows of every shard."""
    if guard is None:
        return None
    import pyarrow.parquet as pq

    table = pq.read_table(out, columns=["status", "ood_score", "prob_1"]).to_pandas()
    rows = table[table["ood_score"].notna()]
    top = rows.loc[rows["status"] == CLASSIFIED, "prob_1"].to_numpy(dtype=float)
    check = guard.check(rows["ood_score"].to_numpy(dtype=float), top)
    return {**guard.describe(), "submission": check.as_dict()}


def _print_summary(out: Path, s: dict[str, Any]) -> None:
    kinds = ", ".join(f"{n} {k}" for k, n in s["skipped_by_kind"].items())
    resumed = (
        f" ({s['shards_resumed']} of {s['shards']} shards were already done)" if s["shards_resumed"] else ""
    )
    ood = f", {s['out_of_distribution']} out of distribution" if s.get("out_of_distribution") else ""
    console.print(
        f"{s['images']} images: {s['classified']} classified, {s['not_evaluable']} not evaluable{ood}, "
        f"{s['skipped']} skipped{f' ({kinds})' if kinds else ''} → {out}{resumed}",
        highlight=False,
    )
    print_ood_verdict(s.get("ood_verdict"))
    if s["images_this_run"]:
        console.print(
            f"this run: {s['images_this_run']} images in {s['seconds_this_run']:.1f} s = "
            f"{s['images_per_second']:.1f} images/s ({s['engine']}, {s['backend']}; TTA {s['tta']['text']})",
            highlight=False,
        )


def print_ood_verdict(verdict: dict[str, Any] | None) -> None:
    """One line per reason when the guard flagged the submission (the images do not look like the training
    images), in red: the results should not be trusted as they are."""
    if not verdict or not verdict["submission"]["flagged"]:
        return
    for reason in verdict["submission"]["reasons"]:
        console.print(f"[red]out of distribution:[/red] {reason}", highlight=False)
