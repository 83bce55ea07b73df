"""The local engine: shards one after another in this process, decoding the next while the model works.

Memory is bounded by two decoded shards (the one being classified and the one being decoded), whatever the
number of images: shards are read from the plan one at a time and their rows go straight to Parquet.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from lablens.infer.decode import DecodedShard, Preprocessing, Shard, decode_shard
from lablens.infer.job import JobFolder
from lablens.infer.shard import ShardClassifier


def run_local(
    job: JobFolder,
    shards: Iterable[Shard],
    classifier: ShardClassifier,
    prep: Preprocessing,
    *,
    workers: int = 2,
    on_shard: Callable[[dict[str, Any]], None],
) -> None:
    """Classify ``shards`` and write each one's part; ``on_shard(entry)`` is called as each completes."""

    def finish(decoded: DecodedShard, t0: float) -> None:
        table = classifier(decoded)
        on_shard(job.write_part(decoded.shard, table, time.perf_counter() - t0))

    with ThreadPoolExecutor(1, thread_name_prefix="lablens-decode") as ahead:
        pending: tuple[Future[DecodedShard], float] | None = None
        for shard in shards:
            nxt = (ahead.submit(decode_shard, shard, prep, workers), time.perf_counter())
            if pending is not None:
                finish(pending[0].result(), pending[1])
            pending = nxt
        if pending is not None:
            finish(pending[0].result(), pending[1])
