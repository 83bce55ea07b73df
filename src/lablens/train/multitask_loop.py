"""Training loop of the multi-task network: classify, grade blur and de-blur, from clean images alone.

Each training batch is augmented as usual, then degraded on the fly with the degradation protocol: with
probability ``blur_prob`` an image gets a blur level drawn uniformly from the positive ``levels`` (else it
stays clean), a kind from ``kinds`` and sensor noise. The network sees the degraded image and learns its
class (cross-entropy, imbalance-aware), its blur level (smooth L1, weight ``quality_weight``) and the clean
image (L1 on the de-blurred output, weight ``deblur_weight``). A weight of 0 switches that task off, so the
same loop trains the ablations, down to a single-task classifier with blur augmentation.

Validation degrades every validation image at every level (fixed records; ``val_levels`` when given) and
selects the epoch with the best macro F1 averaged over those levels. Degradation records are drawn from a generator seeded by (seed, epoch,
batch): runs replay exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from lablens.config import AugmentConfig
from lablens.progress import SilentProgress
from lablens.quality.degrade import Degradation, sample_degradation
from lablens.quality.torch_degrade import degrade_tensor
from lablens.train.augment import apply_params, sample_params
from lablens.train.imbalance import ClassificationLoss, balanced_class_weights, epoch_order
from lablens.train.loop import DeviceImages, LoopResult, _autocast, _lr_at, _mix, _Normalizer, resolve_device

if TYPE_CHECKING:
    from lablens.models.multitask_net import MultiTaskNet


@dataclass
class MultiTaskSettings:
    """Everything the multi-task loop needs, as explicit values."""

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    imbalance: str = "weighted"
    focal_gamma: float = 2.0
    patience: int | None = 8
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    device: str = "cpu"
    amp: bool = True
    channels_last: bool = True
    seed: int = 0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    eval_batch_size: int = 64
    levels: tuple[int, ...] = (0, 1, 2, 3, 4)
    val_levels: tuple[int, ...] | None = None  # levels validation is scored at (None: ``levels``)
    kinds: tuple[str, ...] = ("defocus", "gaussian", "motion")
    noise: float = 0.01
    blur_prob: float = 0.8
    quality_weight: float = 0.5
    deblur_weight: float = 1.0


def training_records(n: int, s: MultiTaskSettings, rng: np.random.Generator) -> list[Degradation]:
    """The degradation of each image of a training batch (level 0 with probability 1 − blur_prob)."""
    positive = [lv for lv in s.levels if lv > 0]
    records = []
    for _ in range(n):
        level = int(rng.choice(positive)) if positive and rng.random() < s.blur_prob else 0
        records.append(sample_degradation(level, s.kinds, rng, s.noise))
    return records


def fixed_records(n: int, level: int, s: MultiTaskSettings, seed: int) -> list[Degradation]:
    """Deterministic records for evaluating ``n`` images at one level (the same on every call)."""
    rng = np.random.default_rng([seed, 7919, level])
    return [sample_degradation(level, s.kinds, rng, s.noise) for _ in range(n)]


@torch.no_grad()
def predict_outputs(
    net: MultiTaskNet,
    images: np.ndarray,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    batch_size: int = 64,
    amp: bool = True,
    records: Sequence[Degradation] | None = None,
    want_deblurred: bool = False,
    channels_last: bool = True,
) -> dict[str, np.ndarray]:
    """Logits, blur levels and (optionally) de-blurred uint8 images for uint8 NHWC ``images``.

    With ``records`` each image is first degraded by its record (evaluation under synthetic blur).
    """
    net.eval()
    if channels_last:
        net.to(memory_format=torch.channels_last)
    norm = _Normalizer(tuple(mean), tuple(std), device, channels_last)
    logits, levels, deblurred = [], [], []
    for start in range(0, len(images), batch_size):
        x = norm.to_float(torch.from_numpy(np.array(images[start : start + batch_size])).to(device))
        if records is not None:
            x = degrade_tensor(x, records[start : start + len(x)])
        with _autocast(device, amp):
            out = net(norm.normalize(x))
        logits.append(out["logits"].float().cpu())
        if "level" in out:
            levels.append(out["level"].float().cpu())
        if want_deblurred:
            restored = x + out["residual"].float() if "residual" in out else x
            deblurred.append((restored.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu())
    result = {"logits": torch.cat(logits).numpy() if logits else np.zeros((0, 0), np.float32)}
    if levels:
        result["level"] = torch.cat(levels).numpy()
    if want_deblurred:
        result["deblurred"] = torch.cat(deblurred).numpy() if deblurred else np.zeros((0,), np.uint8)
    return result


def fit_multitask(
    net: MultiTaskNet,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    *,
    n_classes: int,
    settings: MultiTaskSettings,
    progress: Any = None,
) -> LoopResult:
    """Train ``net`` in place; on return it holds the weights of the best validation epoch."""
    progress = progress or SilentProgress()
    s = settings
    device = resolve_device(s.device)
    net.to(device)
    if s.channels_last:
        net.to(memory_format=torch.channels_last)
    images = DeviceImages(x_train, device)
    norm = _Normalizer(s.mean, s.std, device, s.channels_last)
    y_train = np.asarray(y_train, dtype=np.int64)
    cls_loss = ClassificationLoss(
        s.imbalance, balanced_class_weights(y_train, n_classes), s.focal_gamma, s.label_smoothing
    ).to(device)
    decay = [p for p in net.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.requires_grad and p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=s.lr,
    )
    steps_per_epoch = max(1, math.ceil(len(y_train) / s.batch_size))
    total, warmup = s.epochs * steps_per_epoch, round(s.warmup_epochs * steps_per_epoch)
    has_val = x_val is not None and len(x_val) > 0
    val_levels = s.val_levels if s.val_levels is not None else s.levels
    val_records = {lv: fixed_records(len(x_val), lv, s, s.seed) for lv in val_levels} if has_val else {}
    history: list[dict[str, float]] = []
    best: tuple[float, float] | None = None
    best_state, best_epoch, bad, stopped = None, 0, 0, False
    for epoch in range(1, s.epochs + 1):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(_mix(s.seed, epoch))
        torch.manual_seed(_mix(s.seed, epoch, 1))
        order = epoch_order(y_train, s.imbalance, gen)
        net.train()
        task = progress.task(f"epoch {epoch}/{s.epochs}", steps_per_epoch)
        sums = {"loss": 0.0, "cls": 0.0, "quality": 0.0, "deblur": 0.0}
        seen = 0
        for b in range(steps_per_epoch):
            idx = order[b * s.batch_size : (b + 1) * s.batch_size]
            if len(idx) < 2:
                continue  # BatchNorm cannot train on a single sample
            for group in opt.param_groups:
                group["lr"] = _lr_at((epoch - 1) * steps_per_epoch + b, total, warmup, s.lr)
            clean = norm.to_float(images.batch(idx))
            if s.augment is not None:
                clean = apply_params(clean, sample_params(len(idx), s.augment, gen).to(device))
            records = training_records(len(idx), s, np.random.default_rng([s.seed, epoch, b]))
            blurred = degrade_tensor(clean, records)
            target = torch.as_tensor(y_train[idx], device=device)
            with _autocast(device, s.amp):
                out = net(norm.normalize(blurred))
            parts = {"cls": cls_loss(out["logits"].float(), target)}
            if "level" in out and s.quality_weight > 0:
                level = torch.tensor([r.level for r in records], dtype=torch.float32, device=device)
                parts["quality"] = F.smooth_l1_loss(out["level"].float(), level)
            if "residual" in out and s.deblur_weight > 0:
                restored = (blurred + out["residual"].float()).clamp(0, 1)
                parts["deblur"] = F.l1_loss(restored, clean)
            loss = (
                parts["cls"]
                + s.quality_weight * parts.get("quality", 0.0)
                + s.deblur_weight * parts.get("deblur", 0.0)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n = len(idx)
            seen += n
            sums["loss"] += float(loss.detach()) * n
            for k, v in parts.items():
                sums[k] += float(v.detach()) * n
            task.update(b + 1, loss=sums["loss"] / seen)
        task.done()
        record: dict[str, float] = {"epoch": epoch, "lr": opt.param_groups[0]["lr"]}
        record.update({f"train_{k}": v / max(seen, 1) for k, v in sums.items()})
        record["train_loss"] = record.pop("train_loss")
        if has_val:
            f1s = []
            for lv, recs in val_records.items():
                logits = predict_outputs(
                    net,
                    x_val,
                    mean=s.mean,
                    std=s.std,
                    device=device,
                    batch_size=s.eval_batch_size,
                    amp=s.amp,
                    records=recs,
                    channels_last=s.channels_last,
                )["logits"]
                f1 = f1_score(
                    y_val, logits.argmax(1), labels=np.arange(n_classes), average="macro", zero_division=0
                )
                record[f"val_macro_f1_L{lv}"] = float(f1)
                f1s.append(f1)
            record["val_macro_f1"] = float(np.mean(f1s))
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        key = (record.get("val_macro_f1", 0.0), -record["train_loss"])
        improved = best is None or key > best
        if improved:
            best, best_epoch, bad = key, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
        if s.patience is not None and has_val and bad >= s.patience:
            stopped = True
        val = f"  val_macro_f1 (mean over levels) {record['val_macro_f1']:.4f}" if has_val else ""
        progress.log(
            f"epoch {epoch}/{s.epochs}  loss {record['train_loss']:.4f} (cls {record['train_cls']:.3f}, "
            f"quality {record['train_quality']:.3f}, deblur {record['train_deblur']:.4f}){val}"
            + ("  [green]best[/green]" if improved else "")
        )
        if stopped:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return LoopResult(history=history, best_epoch=best_epoch, stopped_early=stopped)
