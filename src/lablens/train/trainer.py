"""The training engine: one loop for every trainable family, on one device or many processes (DDP, torchrun).

A :class:`~lablens.train.tasks.base.Task` supplies networks, losses and a validation score; the
:class:`Trainer` does everything else, the same way for all of them:

- **data**: images arrive as the decode-once ``N×S×S×3`` uint8 cache; each rank keeps its shard on its device
  and augments batches there (:mod:`lablens.train.pipeline`); which images a step sees is a pure function of
  (seed, epoch, rank) (:mod:`lablens.train.order`), with one static batch shape;
- **optimisation**: AdamW, warm-up + cosine learning rate per step, mixed precision (bfloat16, or float16 with a
  gradient scaler), channels_last, gradient clipping, optional ``torch.compile``;
- **selection**: an exponential moving average of the weights (timm's ``ModelEmaV3``) is validated, selected and
  kept; early stopping and best-epoch selection on the monitored validation metric (validation loss breaks ties);
- **checkpoints**: after every epoch, atomically; ``resume`` continues from the last one and replays exactly
  what an uninterrupted run would have done (also after SIGKILL);
- **processes**: under torchrun each rank trains its shard inside DistributedDataParallel; validation
  predictions are gathered so every rank computes the same scores; only rank 0 writes checkpoints.
"""

from __future__ import annotations

import math
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.utils import ModelEmaV3

from lablens.config import TrainingSettings
from lablens.device import autocast, needs_grad_scaler, resolve_device
from lablens.errors import SettingError
from lablens.nn.network import run_network
from lablens.progress import SilentProgress
from lablens.train import distributed as D
from lablens.train.augment import sample_params
from lablens.train.checkpoint import load_checkpoint, save_checkpoint
from lablens.train.context import FitContext
from lablens.train.order import (
    StepPlan,
    epoch_batches,
    epoch_generator,
    mix_seed,
    shard_owner,
    step_plan,
)
from lablens.train.pipeline import DeviceImages
from lablens.train.tasks.base import Batch, Task

LAST = "last.safetensors"
BEST = "best.safetensors"


class TrainingError(SettingError):
    """Training cannot start with these settings; the message names the setting."""


@dataclass
class FitRecord:
    """What a fit did: one record per epoch, the selected epoch, whether it stopped early or resumed, and the
    optimiser steps it ran (``passes`` passes over the training images per epoch)."""

    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    resumed_from: int | None = None
    steps: int = 0
    passes: int = 1


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up, then cosine decay to 1 % of ``base``: a pure function of the step, so resume is exact.

    (Written out rather than taken from a scheduler object, whose state would need checkpointing too.)
    """
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def score_key(record: dict[str, float], monitor: str) -> tuple[float, float]:
    """Larger is better; validation loss breaks ties (small validation sets tie often)."""
    if "val_loss" not in record:
        return (-record["train_loss"], 0.0)
    if monitor == "loss":
        return (-record["val_loss"], 0.0)
    return (record[f"val_{monitor}"], -record["val_loss"])


def has_batchnorm(net: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())


class _Step:
    """The engine side of a training step (see :class:`~lablens.train.tasks.base.StepContext`)."""

    def __init__(
        self,
        device: torch.device,
        amp: bool,
        optimizers: dict[str, torch.optim.Optimizer],
        scaler: torch.amp.GradScaler,
        grad_clip: float | None,
    ) -> None:
        self.device, self.amp, self.optimizers = device, amp, optimizers
        self.scaler, self.grad_clip = scaler, grad_clip

    def autocast(self) -> AbstractContextManager:
        return autocast(self.device, self.amp)

    def update(self, loss: torch.Tensor, optimizer: str = "main") -> None:
        opt = self.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(opt)
            params = [p for group in opt.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.scaler.step(opt)


@dataclass
class _Stateful:
    """Everything besides the loop's counters that a checkpoint saves and a resume restores."""

    task: Task
    optimizers: dict[str, torch.optim.Optimizer]
    scaler: torch.amp.GradScaler
    ema: ModelEmaV3 | None

    def state_dict(self) -> dict[str, Any]:
        return {
            "networks": {name: net.state_dict() for name, net in self.task.networks.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "ema": self.ema.module.state_dict() if self.ema is not None else {},
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        for name, net in self.task.networks.items():
            net.load_state_dict(saved["networks"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(saved["optimizers"][name])
        if saved.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(saved["scaler"])
        if self.ema is not None and saved.get("ema"):
            self.ema.module.load_state_dict(saved["ema"])


@dataclass
class _Run:
    """What one fit sets up: this rank's shard and its step plan, the wrapped networks, the stateful parts."""

    owner: np.ndarray  # the rank holding each training image
    plan: StepPlan
    position: np.ndarray  # an image's row in this rank's device-resident shard (-1: another rank's)
    images: DeviceImages
    wrapped: dict[str, Any]  # the networks as the training step calls them (DDP, compiled)
    step: _Step
    stateful: _Stateful

    @property
    def evaluated(self) -> torch.nn.Module:
        """The network validated, selected and kept: the weight average when there is one."""
        ema = self.stateful.ema
        return ema.module if ema is not None else self.stateful.task.model


@dataclass
class _Progress:
    """The loop's own state: everything besides weights that a checkpoint must restore."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_key: tuple[float, float] | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False

    def to_dict(self, world_size: int) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "history": self.history,
            "best_key": list(self.best_key) if self.best_key is not None else None,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped,
            "world_size": world_size,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Progress:
        key = tuple(d["best_key"]) if d["best_key"] is not None else None
        return cls(d["epoch"], list(d["history"]), key, d["best_epoch"], d["bad_epochs"], d["stopped_early"])


class Trainer:
    """Trains a task with ``settings`` in ``context`` (device, processes, checkpoints, progress).

    ``settings.lr`` must be set (families resolve their default learning rate before building the trainer).
    """

    def __init__(self, settings: TrainingSettings, context: FitContext | None = None) -> None:
        if settings.lr is None:
            raise TrainingError("the trainer needs a learning rate (train.lr)")
        self.s = settings
        self.ctx = context or FitContext()
        self.env = self.ctx.dist
        self.device = resolve_device(self.ctx.device, self.env.local_rank if self.env.enabled else None)
        self.progress = self.ctx.progress if self.env.is_main else SilentProgress()

    # -- evaluation ---------------------------------------------------------------------------------------
    def predict(self, net: torch.nn.Module, images: np.ndarray, **kwargs: Any) -> dict[str, np.ndarray]:
        """:func:`~lablens.nn.network.run_network` outputs for ``images`` (``kwargs``: mean, std, tta,
        prepare …): each rank predicts its share, every rank gets every row."""
        rows = D.shard_rows(len(images), self.env)
        local = run_network(
            net,
            images[rows],
            device=self.device,
            batch_size=self.ctx.eval_batch_size,
            channels_last=self.s.channels_last,
            amp=self.s.amp,
            indices=rows,
            **kwargs,
        )
        return D.gather_rows(local, len(images), self.env)

    # -- training -----------------------------------------------------------------------------------------
    def fit(
        self,
        task: Task,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> FitRecord:
        """Train ``task``'s networks in place; on return its model holds the selected (best) weights."""
        s, env = self.s, self.env
        y_train = np.asarray(y_train, dtype=np.int64)
        run = self._prepare(task, x_train, y_train)
        ckpt = Path(self.ctx.checkpoint_dir) if self.ctx.checkpoint_dir else None
        state, best_state, resumed = _Progress(), None, None
        if self.ctx.resume and ckpt is not None and (ckpt / LAST).exists():
            state, best_state = self._restore(ckpt, run.stateful)
            resumed = state.epoch
        has_val = x_val is not None and len(x_val) > 0
        for epoch in range(state.epoch + 1, s.epoch_count + 1):
            if state.stopped:
                break
            t0 = time.perf_counter()
            record = self._train_epoch(task, run, y_train, epoch)
            D.broadcast_state(run.evaluated, env)  # BatchNorm statistics differ by each rank's last batch
            if has_val:
                record.update(
                    task.validate(run.evaluated, x_val, np.asarray(y_val, dtype=np.int64), self.predict)
                )
            record["seconds"] = time.perf_counter() - t0
            state.history.append(record)
            improved = state.best_key is None or score_key(record, s.monitor) > state.best_key
            if improved:
                state.best_key, state.best_epoch, state.bad_epochs = score_key(record, s.monitor), epoch, 0
                best_state = {k: v.detach().cpu().clone() for k, v in run.evaluated.state_dict().items()}
                if ckpt is not None and env.is_main:
                    save_checkpoint(ckpt / BEST, {"model": best_state, "epoch": epoch})
            else:
                state.bad_epochs += 1
            state.stopped = s.patience is not None and has_val and state.bad_epochs >= s.patience
            state.epoch = epoch
            self.progress.log(self._epoch_line(record, improved, state.stopped))
            if ckpt is not None and env.is_main:
                save_checkpoint(
                    ckpt / LAST, {**run.stateful.state_dict(), "loop": state.to_dict(env.world_size)}
                )
        task.model.load_state_dict(best_state if best_state is not None else run.evaluated.state_dict())
        task.model.eval()
        steps = len(state.history) * run.plan.epoch_steps
        return FitRecord(state.history, state.best_epoch, state.stopped, resumed, steps, run.plan.passes)

    def _prepare(self, task: Task, x_train: np.ndarray, y_train: np.ndarray) -> _Run:
        """Shard the images, place the networks, build optimisers, scaler and weight average; check settings."""
        s, env, dev = self.s, self.env, self.device
        if self.ctx.threads:
            torch.set_num_threads(int(self.ctx.threads))
        if s.batch_size % env.world_size:
            raise TrainingError(
                f"train.batch_size {s.batch_size} must be a multiple of the {env.world_size} processes "
                "(each takes an equal share of every batch)"
            )
        owner = shard_owner(len(y_train), env.world_size, s.seed)
        plan = step_plan(
            np.bincount(owner, minlength=env.world_size), s.batch_size, env.world_size, s.drop_last
        )
        passes = max(1, math.ceil(s.step_floor / (s.epoch_count * plan.steps)))
        plan = StepPlan(plan.per_rank, plan.steps, passes)
        if plan.per_rank < 2 and has_batchnorm(task.model):
            raise TrainingError(
                f"{plan.per_rank} image per process and step: BatchNorm needs at least 2 (raise train.batch_size, "
                "use fewer processes or more training images)"
            )
        local = np.flatnonzero(owner == env.rank)
        position = np.full(len(y_train), -1, dtype=np.int64)
        position[local] = np.arange(len(local))
        for net in task.networks.values():
            net.to(dev)
            if s.channels_last:
                net.to(memory_format=torch.channels_last)
        wrapped = {
            name: self._wrap(net) for name, net in task.networks.items()
        }  # after DDP's initial broadcast …
        optimizers = task.optimizers(s, float(s.lr))
        scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(dev, s.amp))
        ema = (
            ModelEmaV3(task.model, decay=s.ema_decay, use_warmup=True, warmup_power=3 / 4) if s.ema else None
        )
        return _Run(  # … the averaged copy starts from the same weights on every rank
            owner=owner,
            plan=plan,
            position=position,
            images=DeviceImages(x_train[local], dev),
            wrapped=wrapped,
            step=_Step(dev, s.amp, optimizers, scaler, s.grad_clip),
            stateful=_Stateful(task, optimizers, scaler, ema),
        )

    def _train_epoch(self, task: Task, run: _Run, y_train: np.ndarray, epoch: int) -> dict[str, float]:
        """One epoch of optimiser steps on this rank's shard; returns the epoch's training record."""
        s, env, plan, dev = self.s, self.env, run.plan, self.device
        t0 = time.perf_counter()
        gen = epoch_generator(s.seed, epoch)
        torch.manual_seed(mix_seed(s.seed, epoch, 1, env.rank))  # dropout / drop-path replay on resume
        batches = epoch_batches(y_train, s.imbalance, gen, run.owner, env.rank, plan)
        for net in task.networks.values():
            net.train()
        steps = plan.epoch_steps
        total, warmup = s.epoch_count * steps, round(s.warmup_epochs * steps)
        bar = self.progress.task(f"epoch {epoch}/{s.epoch_count}", steps)
        sums: dict[str, torch.Tensor] = {}
        for b, idx in enumerate(batches):
            step = (epoch - 1) * steps + b
            for opt in run.stateful.optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, total, warmup, float(s.lr))
            augment = None
            if s.augment is not None:  # drawn for the global batch: every rank consumes the same draws
                drawn = sample_params(plan.per_rank * env.world_size, s.augment, gen)
                augment = drawn.rows(env.rank * plan.per_rank, (env.rank + 1) * plan.per_rank)
            x = run.images.floats(run.position[idx], augment)
            batch = Batch(x, torch.as_tensor(y_train[idx], device=dev), idx, epoch, step, env.rank)
            logs = task.training_step(run.wrapped, batch, run.step)
            run.stateful.scaler.update()
            if run.stateful.ema is not None:
                run.stateful.ema.update(task.model, step=step)
            for name, value in logs.items():  # summed on the device: no synchronisation per step
                sums[name] = sums.get(name, 0.0) + value.float() * len(idx)
            if b % 10 == 9 or b == steps - 1:
                bar.update(b + 1, loss=float(sums["loss"]) / ((b + 1) * len(idx)))
        bar.done()
        record = self._train_record(epoch, sums, steps * plan.per_rank, run.stateful.optimizers)
        record["steps"] = steps
        record["train_seconds"] = time.perf_counter() - t0
        record["train_images_per_s"] = steps * plan.per_rank * env.world_size / record["train_seconds"]
        return record

    def _wrap(self, net: torch.nn.Module) -> Any:
        """The network as the training step calls it: inside DDP across processes, compiled on request."""
        if self.env.enabled and any(p.requires_grad for p in net.parameters()):
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            net = DistributedDataParallel(net, device_ids=ids)  # broadcasts rank 0's initial weights
        return torch.compile(net) if self.s.compile else net

    def _train_record(
        self,
        epoch: int,
        sums: dict[str, torch.Tensor],
        seen: int,
        optimizers: dict[str, torch.optim.Optimizer],
    ) -> dict[str, float]:
        names = list(sums)
        totals = D.all_reduce_sum(torch.stack([sums[n] for n in names]), self.env).tolist()
        count = seen * self.env.world_size
        record: dict[str, float] = {"epoch": epoch}
        record.update({f"train_{n}": t / count for n, t in zip(names, totals, strict=True)})
        record["lr"] = next(iter(optimizers.values())).param_groups[0]["lr"]
        return record

    def _restore(self, ckpt: Path, stateful: _Stateful) -> tuple[_Progress, dict[str, torch.Tensor] | None]:
        saved = load_checkpoint(ckpt / LAST)
        stateful.load_state_dict(saved)
        state = _Progress.from_dict(saved["loop"])
        if saved["loop"].get("world_size", 1) != self.env.world_size:
            self.progress.log(
                f"note: the run was checkpointed with {saved['loop'].get('world_size', 1)} process(es) and continues "
                f"with {self.env.world_size}; it goes on, but does not replay bit for bit"
            )
        best = load_checkpoint(ckpt / BEST)["model"] if (ckpt / BEST).exists() else None
        self.progress.log(f"resumed after epoch {state.epoch} from {ckpt / LAST}")
        return state, best

    def _epoch_line(self, record: dict[str, float], improved: bool, stopped: bool) -> str:
        s = self.s
        parts = [f"epoch {int(record['epoch'])}/{s.epoch_count}", f"train_loss {record['train_loss']:.4f}"]
        if "val_loss" in record:
            parts.append(f"val_loss {record['val_loss']:.4f}")
            if s.monitor != "loss":
                parts.append(f"val_{s.monitor} {record[f'val_{s.monitor}']:.4f}")
        parts.append(f"{record['train_images_per_s']:.0f} img/s")
        if improved:
            parts.append("[green]best[/green]")
        if stopped:
            parts.append("[yellow]early stop[/yellow]")
        return "  ".join(parts)
