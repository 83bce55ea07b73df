"""Training throughput of the engine, as a ratio to the same model's ceiling on the same device.

Command:
    python benchmarks/train_throughput.py [--data FOLDER] [--models resnet18,resnet34] [--image-size 224]
        [--device cpu|cuda] [--compile off,on] [--batch-size 64] [--epochs 2] [--out throughput.json]

For each model (and with/without ``torch.compile``) it measures, in one run:
  * epoch: a real training epoch of lablens's Trainer on the decoded images (device-resident uint8 cache,
    on-device augmentation, AMP, channels_last, EMA, static batches), images/s of the last epoch (the first
    one pays for warm-up and compilation);
  * ceiling: the same network and optimiser on synthetic tensors already on the device (forward, backward,
    AdamW step, nothing else), images/s;
  * ratio = epoch / ceiling (1.0: the input pipeline and the engine cost nothing).
Images come from --data (any lablens dataset) or, by default, 256 freshly generated blood-cell phantoms.
Prints a table and writes JSON (default benchmarks/results/train_throughput-<device>-<size>.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lablens.config import TrainingSettings
from lablens.data.cache import load_pixels
from lablens.data.validate import load_dataset
from lablens.device import autocast, needs_grad_scaler, resolve_device
from lablens.nn.weights import build_network
from lablens.train.context import FitContext
from lablens.train.imbalance import ClassificationLoss, balanced_class_weights
from lablens.train.tasks import ClassificationTask
from lablens.train.trainer import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images(data: str | None, size: int, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    with tempfile.TemporaryDirectory() as tmp:
        if data is None:
            from lablens.phantoms import write_phantoms

            data = str(Path(tmp) / "phantoms")
            write_phantoms("blood-cells", data, n=n, seed=0, size=max(size, 64))
        manifest, _ = load_dataset(data)
        t0 = time.perf_counter()
        pixels = load_pixels(
            manifest.paths, manifest.table["sha256"].tolist(), size, "pad", cache_dir=Path(tmp) / "cache"
        )
        pixels = np.array(pixels)  # into memory before the temporary cache goes away
        decode_rate = len(pixels) / (time.perf_counter() - t0)
    return pixels, manifest.y, decode_rate


def epoch_rate(
    model: str,
    pixels: np.ndarray,
    y: np.ndarray,
    device: torch.device,
    args: argparse.Namespace,
    compile_: bool,
) -> float:
    """Images/s of the last of ``args.epochs`` training epochs on the engine."""
    torch.manual_seed(0)
    n_classes = int(y.max()) + 1
    net, info = build_network(model, "scratch", n_classes)
    loss = ClassificationLoss("weighted", balanced_class_weights(y, n_classes))
    task = ClassificationTask(net, n_classes, loss, info.mean, info.std, channels_last=True)
    settings = TrainingSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-3,
        compile=compile_,
        patience=None,
        drop_last=True,
    )
    result = Trainer(settings, FitContext(device=str(device))).fit(task, pixels, y)
    return float(result.history[-1]["train_images_per_s"])


def ceiling_rate(
    model: str, n_classes: int, device: torch.device, args: argparse.Namespace, compile_: bool
) -> float:
    """Images/s of forward + backward + AdamW on synthetic tensors already on the device."""
    torch.manual_seed(0)
    net, _ = build_network(model, "scratch", n_classes)
    net = net.to(device).to(memory_format=torch.channels_last).train()
    step_net = torch.compile(net) if compile_ else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(device, True))
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, n_classes, (args.batch_size,), device=device)

    def step() -> None:
        with autocast(device, True):
            out = step_net(x)
        loss = torch.nn.functional.cross_entropy(out.float(), target)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(args.warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet18")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2, help="training epochs; the last one is timed")
    ap.add_argument("--steps", type=int, default=20, help="timed steps of the synthetic ceiling")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps before the ceiling")
    ap.add_argument("--data", default=None)
    ap.add_argument("--n", type=int, default=256, help="phantom images when --data is not given")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", default="off", help="off, on, or off,on (both, side by side)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    pixels, y, decode_rate = _images(args.data, args.image_size, args.n)
    result = {
        "benchmark": "train_throughput",
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "n_images": len(pixels),
        "data": args.data or f"{args.n} blood-cell phantoms",
        "decode_images_per_s": decode_rate,
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "platform": platform.platform(terse=True),
        "runs": [],
    }
    out = Path(args.out or f"benchmarks/results/train_throughput-{device.type}-{args.image_size}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"{len(pixels)} images at {args.image_size} px, batch {args.batch_size}, {device}; decode {decode_rate:.0f} img/s"
    )
    for model in args.models.split(","):
        for mode in args.compile.split(","):
            compile_ = {"off": False, "on": True}[mode]
            epoch = epoch_rate(model, pixels, y, device, args, compile_)
            ceiling = ceiling_rate(model, int(y.max()) + 1, device, args, compile_)
            run = {
                "model": model,
                "compile": compile_,
                "epoch_images_per_s": epoch,
                "ceiling_images_per_s": ceiling,
                "ratio": epoch / ceiling,
            }
            result["runs"].append(run)
            out.write_text(
                json.dumps(result, indent=1)
            )  # after every run: a partial result survives a timeout
            print(
                f"  {model:12s} compile {mode:3s}  epoch {epoch:8.1f} img/s   ceiling {ceiling:8.1f} img/s   "
                f"ratio {epoch / ceiling:.2f}"
            )
    print(f"→ {out}")


if __name__ == "__main__":
    main()
