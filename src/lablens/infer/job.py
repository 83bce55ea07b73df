"""The folder of an archive job: its plan, its Parquet shards and the record of what is done.

``lablens predict BUNDLE SOURCES --out DIR`` writes::

    DIR/_job.json          the job's settings (bundle hash, top-k, quality gate, TTA, shard size, sources)
                           and its size; written once the plan is complete
    DIR/_plan/00000.jsonl  the input paths of each shard, fixed when the job begins
    DIR/part-00000.parquet one row per input of shard 0 (written atomically: a killed run leaves no half file)
    DIR/_shards.jsonl      one line per completed shard (file, rows, counts by status and skip reason)
    DIR/_SUCCESS           the final summary, once every shard is done

A rerun of the same command finds ``_job.json``, checks that the settings are the same (a different bundle or
top-k is an error naming the setting: rows of two jobs are never mixed), and runs only the shards that
``_shards.jsonl`` does not list, over the plan's paths, so it writes exactly the rows an uninterrupted run
writes. Files whose names start with ``_`` or ``.`` are ignored by Parquet readers:
``pandas.read_parquet(DIR)`` reads the rows alone.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lablens import jsonio
from lablens.errors import LablensError
from lablens.infer.decode import Shard
from lablens.infer.shard import STATUSES

JOB, PLAN, SHARDS, SUCCESS = "_job.json", "_plan", "_shards.jsonl", "_SUCCESS"
SCHEMA = "lablens.predict-job/1"
EXAMPLES = 5  # skipped files named per shard in its record (every one is a row of the shard, with its reason)


class JobError(LablensError):
    """The job folder cannot be used as asked; the message names the folder or setting and says why."""


def _dump_line(doc: Any) -> str:
    return jsonio.dumps(doc, ensure_ascii=True) + "\n"  # \\udcxx escapes keep undecodable path bytes


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class JobInfo:
    n_images: int
    n_shards: int
    shard_size: int
    resumed: bool


class JobFolder:
    """Plan, shards and completion record of one job in ``out``."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)

    # -- the plan ------------------------------------------------------------------------------------------
    def prepare(self, settings: dict[str, Any], paths: Iterable[str], shard_size: int) -> JobInfo:
        """Start the job (write its plan from ``paths``) or check that ``out`` holds this same job."""
        job = self.out / JOB
        if job.is_file():
            try:
                doc = json.loads(job.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                doc = None
            if not isinstance(doc, dict) or not {"settings", "n_images", "n_shards"} <= doc.keys():
                raise JobError(
                    f"{job} is damaged (not the JSON lablens wrote); the job cannot be resumed: choose a new --out"
                )
            mine = {**settings, "shard_size": shard_size}
            for key, value in mine.items():
                if doc["settings"].get(key) != json.loads(jsonio.dumps(value)):
                    raise JobError(
                        f"{self.out} holds a job with another {key} ({doc['settings'].get(key)!r}, not "
                        f"{value!r}); rerun with its settings to resume it, or choose a new --out"
                    )
            return JobInfo(doc["n_images"], doc["n_shards"], shard_size, resumed=True)
        if self.out.exists() and any(p.name not in (PLAN,) for p in self.out.iterdir()):
            raise JobError(
                f"{self.out} exists and is not a lablens predict job; choose a new --out (nothing is overwritten)"
            )
        plan = self.out / PLAN
        shutil.rmtree(plan, ignore_errors=True)  # a plan that never finished (no _job.json): start it again
        plan.mkdir(parents=True)
        n = n_shards = 0
        fh = None
        for path in paths:
            if n % shard_size == 0:
                if fh is not None:
                    fh.close()
                fh = (plan / f"{n_shards:05d}.jsonl").open("w", encoding="utf-8")
                n_shards += 1
            fh.write(_dump_line(path))  # type: ignore[union-attr]
            n += 1
        if fh is not None:
            fh.close()
        doc = {
            "schema": SCHEMA,
            "settings": json.loads(jsonio.dumps({**settings, "shard_size": shard_size})),
            "n_images": n,
            "n_shards": n_shards,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        _write_atomic(job, jsonio.dumps(doc, indent=1))
        return JobInfo(n, n_shards, shard_size, resumed=False)

    def shard(self, index: int, shard_size: int) -> Shard:
        """The planned paths of shard ``index``."""
        with (self.out / PLAN / f"{index:05d}.jsonl").open(encoding="utf-8") as fh:
            paths = [json.loads(line) for line in fh]
        return Shard(index, index * shard_size, paths)

    def shards(self, indices: Iterable[int], shard_size: int) -> Iterator[Shard]:
        return (self.shard(i, shard_size) for i in indices)

    # -- progress ------------------------------------------------------------------------------------------
    def completed(self) -> dict[int, dict[str, Any]]:
        """Completed shards by index (a line cut short by a kill is ignored: that shard runs again)."""
        done: dict[int, dict[str, Any]] = {}
        path = self.out / SHARDS
        if not path.is_file():
            return done
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if (self.out / entry["file"]).is_file():
                done[int(entry["shard"])] = entry
        return done

    def write_part(self, shard: Shard, table: pa.Table, seconds: float = 0.0) -> dict[str, Any]:
        """Write shard ``shard``'s rows atomically; return its completion entry (not yet recorded)."""
        name = f"part-{shard.index:05d}.parquet"
        tmp = self.out / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.out / name)
        status = Counter(table.column("status").to_pylist())
        kind_col = table.column("error_kind").to_pylist()
        kinds = Counter(k for k in kind_col if k is not None)
        bad = [i for i, k in enumerate(kind_col) if k is not None][:EXAMPLES]
        paths, reasons = table.column("path").to_pylist(), table.column("error_reason").to_pylist()
        return {
            "shard": shard.index,
            "file": name,
            "rows": table.num_rows,
            **{key: status.get(key, 0) for key in STATUSES},
            "skipped_by_kind": dict(sorted(kinds.items())),
            "skipped_examples": [[paths[i], kind_col[i], reasons[i]] for i in bad],
            "seconds": round(seconds, 3),
        }

    def record(self, entry: dict[str, Any]) -> None:
        """Add a completed shard to ``_shards.jsonl`` (flushed to disk before the next shard counts)."""
        with (self.out / SHARDS).open("a", encoding="utf-8") as fh:
            fh.write(_dump_line(entry))
            fh.flush()
            os.fsync(fh.fileno())

    def finish(self, summary: dict[str, Any]) -> None:
        _write_atomic(self.out / SUCCESS, jsonio.dumps(summary, indent=1))

    def success(self) -> dict[str, Any] | None:
        path = self.out / SUCCESS
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def totals(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Rows, counts by status and skipped files by reason over completed shards."""
    out: dict[str, Any] = {"images": 0, **dict.fromkeys(STATUSES, 0)}
    kinds: Counter[str] = Counter()
    for e in entries:
        out["images"] += e["rows"]
        for key in STATUSES:
            out[key] += e.get(key, 0)
        kinds.update(e["skipped_by_kind"])
    out["skipped_by_kind"] = dict(sorted(kinds.items()))
    return out
