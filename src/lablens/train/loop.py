"""The supervised training loop for any ``torch.nn.Module`` classifier fed from uint8 image arrays.

Data arrive as ``N×S×S×3`` uint8 arrays (the decode-once cache). Batches are indexed from a tensor that
lives on the device when it fits (else pinned host memory), converted to float and augmented on the
device, then normalised, so per-step CPU work is a tensor index. Features: AMP (bf16/fp16) and
channels_last on CUDA, warm-up + cosine learning rate, class-imbalance losses or a balanced sampler,
early stopping and best-checkpoint selection on a validation metric, exact resume after an abrupt kill
(per-epoch seeds are derived from the run seed, so a resumed epoch replays the interrupted one).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, f1_score
from timm.utils import ModelEmaV3

from lablens.config import AugmentConfig
from lablens.progress import SilentProgress
from lablens.train.augment import apply_params, sample_params
from lablens.train.checkpoint import load_checkpoint, save_checkpoint
from lablens.train.imbalance import ClassificationLoss, balanced_class_weights, epoch_order

LAST = "last.safetensors"
BEST = "best.safetensors"


@dataclass
class LoopSettings:
    """Everything the loop needs, as explicit values."""

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    imbalance: str = "weighted"
    focal_gamma: float = 2.0
    monitor: str = "macro_f1"
    patience: int | None = 8
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    device: str = "cpu"
    amp: bool = True
    channels_last: bool = True
    seed: int = 0
    ema: bool = True
    ema_decay: float = 0.999
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    eval_batch_size: int = 64
    tta: bool = False


@dataclass
class LoopResult:
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    resumed_from: int | None = None


def resolve_device(spec: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise a torch device string, checked."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} asked for, but CUDA is not available on this machine")
    return dev


def _mix(*values: int) -> int:
    """A deterministic 63-bit seed from integers (no Python ``hash``: it is salted per process)."""
    s = np.random.SeedSequence([int(v) % (2**63) for v in values])
    return int(s.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class DeviceImages:
    """uint8 images resident on the device (or pinned host memory), indexed per batch."""

    def __init__(self, images: np.ndarray, device: torch.device) -> None:
        host = torch.from_numpy(np.array(images))  # a writable in-memory copy of the (read-only) cache
        self.device = device
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            self.data = host.to(device) if host.numel() < 0.3 * free else host.pin_memory()
        else:
            self.data = host

    def __len__(self) -> int:
        return self.data.shape[0]

    def batch(self, idx: np.ndarray) -> torch.Tensor:
        index = torch.as_tensor(idx, dtype=torch.long, device=self.data.device)
        return self.data.index_select(0, index).to(self.device, non_blocking=True)


class _Normalizer:
    def __init__(
        self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, cl: bool
    ) -> None:
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.channels_last = cl

    def to_float(self, xb: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC → float NCHW in [0, 1]."""
        return xb.permute(0, 3, 1, 2).float().div_(255.0)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()


class BatchMaker:
    """The input pipeline: index uint8 images → float on the device → augment → normalise."""

    def __init__(
        self,
        images: np.ndarray,
        device: torch.device,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augment: AugmentConfig | None,
        channels_last: bool,
    ) -> None:
        self.images = DeviceImages(images, device)
        self.device = device
        self.augment = augment
        self.norm = _Normalizer(mean, std, device, channels_last)

    def __call__(self, idx: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        x = self.norm.to_float(self.images.batch(idx))
        if self.augment is not None:
            x = apply_params(x, sample_params(len(idx), self.augment, generator).to(self.device))
        return self.norm.normalize(x)


def train_step(
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss_fn: torch.nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    amp: bool,
) -> torch.Tensor:
    """One optimisation step; returns the (detached) batch loss without synchronising the device."""
    with _autocast(x.device, amp):
        logits = net(x)
    loss = loss_fn(logits, target)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss.detach()


def _autocast(device: torch.device, amp: bool) -> Any:
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 flips/rotations of a square batch (k = 0 is the identity)."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


@torch.no_grad()
def predict_logits(
    net: torch.nn.Module,
    images: np.ndarray,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
    batch_size: int = 64,
    channels_last: bool = True,
    amp: bool = True,
    tta: bool = False,
    progress_task: Any = None,
) -> np.ndarray:
    """Logits (``N×K`` float32) for uint8 NHWC images, in order.

    With ``tta`` the logits are averaged over the 8 flips/rotations of each image (cells have no
    orientation, so this removes the network's residual orientation dependence).
    """
    net.eval()
    norm = _Normalizer(mean, std, device, channels_last)
    out = []
    for start in range(0, len(images), batch_size):
        xb = torch.from_numpy(np.array(images[start : start + batch_size])).to(
            device
        )  # copy: caches are read-only
        x = norm.to_float(xb)
        views = range(8) if tta else range(1)
        with _autocast(device, amp):
            logits = sum(net(norm.normalize(dihedral(x, k))).float() for k in views) / len(views)
        out.append(logits.float().cpu())
        if progress_task is not None:
            progress_task.advance(len(xb))
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy()


def _val_metrics(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred = logits.argmax(1)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)).item()
    labels = np.arange(logits.shape[1])
    return {
        "val_loss": loss,
        "val_accuracy": float((pred == y).mean()),
        "val_balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "val_macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
    }


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def _score_key(record: dict[str, float], monitor: str) -> tuple[float, float]:
    """Larger is better; validation loss breaks ties (small validation sets tie often)."""
    if "val_loss" not in record:
        return (-record["train_loss"], 0.0)
    if monitor == "loss":
        return (-record["val_loss"], 0.0)
    return (record[f"val_{monitor}"], -record["val_loss"])


def fit_network(
    net: torch.nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    *,
    n_classes: int,
    settings: LoopSettings,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: Any = None,
) -> LoopResult:
    """Train ``net`` in place; on return it holds the best weights (by the monitored validation metric)."""
    progress = progress or SilentProgress()
    s = settings
    device = resolve_device(s.device)
    cl = s.channels_last
    net.to(device)
    if cl:
        net.to(memory_format=torch.channels_last)
    make_batch = BatchMaker(x_train, device, s.mean, s.std, s.augment, cl)
    y_train = np.asarray(y_train, dtype=np.int64)
    has_val = x_val is not None and len(x_val) > 0
    loss_fn = ClassificationLoss(
        s.imbalance, balanced_class_weights(y_train, n_classes), s.focal_gamma, s.label_smoothing
    ).to(device)
    decay, no_decay = [], []
    for p in net.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=s.lr,
    )
    use_scaler = s.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    steps_per_epoch = max(1, math.ceil(len(y_train) / s.batch_size))
    total_steps = s.epochs * steps_per_epoch
    warmup_steps = round(s.warmup_epochs * steps_per_epoch)

    # Exponential moving average of the weights (timm's ModelEmaV3, decay warmed up for short runs):
    # validation, model selection and the returned weights use the averaged model.
    ema = ModelEmaV3(net, decay=s.ema_decay, use_warmup=True, warmup_power=3 / 4) if s.ema else None
    has_bn = _has_batchnorm(net)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else None
    history: list[dict[str, float]] = []
    best_key: tuple[float, float] | None = None
    best_epoch, bad_epochs, start_epoch, stopped = 0, 0, 1, False
    best_state: dict[str, torch.Tensor] | None = None
    resumed_from = None
    if resume and ckpt_dir and (ckpt_dir / LAST).exists():
        state = load_checkpoint(ckpt_dir / LAST)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.module.load_state_dict(state["ema"])
        loop = state["loop"]
        history = loop["history"]
        best_key = tuple(loop["best_key"]) if loop["best_key"] is not None else None
        best_epoch, bad_epochs, stopped = loop["best_epoch"], loop["bad_epochs"], loop["stopped_early"]
        start_epoch = loop["epoch"] + 1
        resumed_from = loop["epoch"]
        if (ckpt_dir / BEST).exists():
            best_state = load_checkpoint(ckpt_dir / BEST)["model"]
        progress.log(f"resumed after epoch {loop['epoch']} from {ckpt_dir / LAST}")

    for epoch in range(start_epoch, s.epochs + 1):
        if stopped:
            break
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(_mix(s.seed, epoch))
        torch.manual_seed(_mix(s.seed, epoch, 1))  # dropout / drop-path replay exactly on resume
        order = epoch_order(y_train, s.imbalance, gen)
        net.train()
        task = progress.task(f"epoch {epoch}/{s.epochs}", steps_per_epoch)
        running = torch.zeros((), device=device)  # summed on the device: no sync per step
        seen = 0
        for b in range(steps_per_epoch):
            idx = order[b * s.batch_size : (b + 1) * s.batch_size]
            if len(idx) == 0 or (len(idx) == 1 and has_bn):
                continue  # BatchNorm cannot train on a single sample
            step = (epoch - 1) * steps_per_epoch + b
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total_steps, warmup_steps, s.lr)
            x = make_batch(idx, gen)
            target = torch.as_tensor(y_train[idx], device=device)
            running += train_step(net, opt, scaler, loss_fn, x, target, s.amp) * len(idx)
            if ema is not None:
                ema.update(net, step=step)
            seen += len(idx)
            if b % 10 == 9 or b == steps_per_epoch - 1:
                task.update(b + 1, loss=running.item() / max(seen, 1))
        task.done()
        record: dict[str, float] = {
            "epoch": epoch,
            "train_loss": running.item() / max(seen, 1),
            "lr": opt.param_groups[0]["lr"],
        }
        evaluated = ema.module if ema is not None else net
        if has_val:
            logits_val = predict_logits(
                evaluated,
                x_val,
                mean=s.mean,
                std=s.std,
                device=device,
                batch_size=s.eval_batch_size,
                channels_last=cl,
                amp=s.amp,
                tta=s.tta,
            )
            record.update(_val_metrics(logits_val, np.asarray(y_val, dtype=np.int64)))
        record["seconds"] = time.perf_counter() - t0
        record["train_images_per_s"] = seen / max(record["seconds"], 1e-9)
        history.append(record)
        key = _score_key(record, s.monitor)
        improved = best_key is None or key > best_key
        if improved:
            best_key, best_epoch, bad_epochs = key, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in evaluated.state_dict().items()}
            if ckpt_dir:
                save_checkpoint(ckpt_dir / BEST, {"model": best_state, "epoch": epoch})
        else:
            bad_epochs += 1
        if s.patience is not None and has_val and bad_epochs >= s.patience:
            stopped = True
        progress.log(_epoch_line(record, s, improved, stopped))
        if ckpt_dir:
            save_checkpoint(
                ckpt_dir / LAST,
                {
                    "model": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scaler": scaler.state_dict() if use_scaler else {},
                    "ema": ema.module.state_dict() if ema is not None else {},
                    "loop": {
                        "epoch": epoch,
                        "history": history,
                        "best_key": list(best_key) if best_key is not None else None,
                        "best_epoch": best_epoch,
                        "bad_epochs": bad_epochs,
                        "stopped_early": stopped,
                    },
                },
            )
    if best_state is not None:
        net.load_state_dict(best_state)
    elif ema is not None:
        net.load_state_dict(ema.module.state_dict())
    net.eval()
    return LoopResult(
        history=history, best_epoch=best_epoch, stopped_early=stopped, resumed_from=resumed_from
    )


def _has_batchnorm(net: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())


def _epoch_line(record: dict[str, float], s: LoopSettings, improved: bool, stopped: bool) -> str:
    parts = [f"epoch {int(record['epoch'])}/{s.epochs}", f"train_loss {record['train_loss']:.4f}"]
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
