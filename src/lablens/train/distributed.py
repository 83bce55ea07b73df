"""Data-parallel training through torchrun: process environment, launching, and the few collectives lablens needs.

lablens does not start processes itself. ``lablens train --nproc N`` hands the job to torchrun's elastic agent
(:func:`launch`, the engine behind the ``torchrun`` command); on clusters users call ``torchrun … -m lablens.cli
train …`` themselves. Either way each process reads its rank from the environment torchrun sets
(:func:`env_from_torchrun`), joins the process group (:func:`process_group`: NCCL on GPUs, gloo on CPUs), trains
its shard, and only rank 0 writes files.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a distributed run (a single process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistEnv()


def env_from_torchrun() -> DistEnv:
    """The rank, world size and local rank torchrun gives each process (rank 0 of 1 outside torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return DistEnv(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def process_group(env: DistEnv, device: torch.device) -> Iterator[None]:
    """Join the process group for the duration of a run (nothing to do for a single process)."""
    if not env.enabled or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo", rank=env.rank, world_size=env.world_size
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """NCCL exchanges CUDA tensors, gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Element-wise sum over ranks (the tensor itself for a single process)."""
    if not env.enabled:
        return values
    buf = values.detach().to(_comm_device(), torch.float64).clone()
    dist.all_reduce(buf)
    return buf.to(values.device)


def shard_rows(n: int, env: DistEnv) -> np.ndarray:
    """The rows of an ``n``-row evaluation set that this rank predicts (interleaved, so shares differ by ≤ 1)."""
    return np.arange(env.rank, n, env.world_size)


def gather_rows(local: dict[str, np.ndarray], n: int, env: DistEnv) -> dict[str, np.ndarray]:
    """Reassemble per-rank results of :func:`shard_rows` into full arrays in row order, on every rank."""
    if not env.enabled:
        return local
    out = {}
    for name in sorted(local):
        part = torch.from_numpy(np.ascontiguousarray(local[name]))
        width = max(1, -(-n // env.world_size))  # every rank pads to the largest share
        padded = torch.zeros((width, *part.shape[1:]), dtype=part.dtype)
        padded[: len(part)] = part
        padded = padded.to(_comm_device())
        pieces = [torch.empty_like(padded) for _ in range(env.world_size)]
        dist.all_gather(pieces, padded)
        full = torch.empty((n, *part.shape[1:]), dtype=part.dtype)
        for r, piece in enumerate(pieces):
            rows = shard_rows(n, DistEnv(r, env.world_size))
            full[rows] = piece[: len(rows)].cpu()
        out[name] = full.numpy()
    return out


def broadcast_state(module: torch.nn.Module, env: DistEnv) -> None:
    """Give every rank rank 0's parameters and buffers (e.g. BatchNorm statistics before an evaluation)."""
    if not env.enabled:
        return
    for tensor in module.state_dict().values():
        if tensor.is_floating_point() or tensor.dtype in (torch.int64, torch.int32):
            buf = tensor.detach().to(_comm_device())
            dist.broadcast(buf, src=0)
            tensor.copy_(buf.to(tensor.device))


def on_main(fn: Callable[[], T], env: DistEnv, error: type[Exception]) -> T | None:
    """Run ``fn`` on rank 0 only; if it fails with ``error``, every rank raises it with rank 0's message.

    (Without this, the other ranks would wait forever at the next collective call.)
    """
    if not env.enabled:
        return fn()
    message: list[Any] = [None]
    result = None
    if env.is_main:
        try:
            result = fn()
        except error as exc:
            message[0] = str(exc)
    dist.broadcast_object_list(message, src=0)
    if message[0] is not None:
        raise error(message[0])
    return result


def launch(nproc: int, fn: Callable[..., T], args: tuple[Any, ...]) -> dict[int, T]:
    """Run ``fn(*args)`` in ``nproc`` processes on this machine with torchrun's elastic agent; returns by rank.

    This is what ``torchrun --standalone --nproc-per-node N`` does, called from Python so that ``lablens train
    --nproc N`` and ``api.train(..., nproc=N)`` need no second command.
    """
    import logging

    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"lablens-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.5,
        start_method="spawn",
    )
    # the agent logs a failed worker's traceback; the caller reports the failure itself, in one line
    agent_log = logging.getLogger("torch.distributed.elastic")
    level = agent_log.level
    agent_log.setLevel(logging.CRITICAL)
    # as torchrun does: share the CPU cores between the processes instead of each taking all of them
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads is None:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    try:
        return elastic_launch(config, fn)(*args)
    finally:
        agent_log.setLevel(level)
        if threads is None:
            del os.environ["OMP_NUM_THREADS"]
