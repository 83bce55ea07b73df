"""Training throughput: images/s of the input pipeline alone and of full training steps.

Command:
    python benchmarks/train_throughput.py --model resnet18 --image-size 128 [--batch-size 32]
        [--data FOLDER] [--devices cpu,cuda] [--steps 20] [--out throughput.json]

Measures, per device (CPU always, CUDA when present):
  * decode: files → uint8 cache at the training size (the once-per-dataset cost), images/s;
  * pipeline: index cached uint8 → device → float → augment → normalise, no model, images/s;
  * train: pipeline + forward + backward + optimiser step (AMP and channels_last as lablens trains), images/s;
  * infer: forward only in eval mode, images/s.
Images come from --data (any lablens dataset) or, by default, 256 freshly generated blood-cell phantoms.
Writes JSON (default benchmarks/results/train_throughput-<model>-<size>.json) and prints a table.
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

from lablens.config import AugmentConfig
from lablens.data.cache import load_pixels
from lablens.data.validate import load_dataset
from lablens.models.weights import build_network
from lablens.train.imbalance import ClassificationLoss
from lablens.train.loop import BatchMaker, predict_logits, train_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images(data: str | None, size: int, n: int) -> tuple[np.ndarray, float]:
    with tempfile.TemporaryDirectory() as tmp:
        if data is None:
            from lablens.data.phantoms import write_phantoms

            data = str(Path(tmp) / "phantoms")
            write_phantoms("blood-cells", data, n=n, seed=0, size=max(size, 64))
        manifest, _ = load_dataset(data)
        t0 = time.perf_counter()
        pixels = load_pixels(
            manifest.paths, manifest.table["sha256"].tolist(), size, "pad", cache_dir=Path(tmp) / "cache"
        )
        pixels = np.array(pixels)  # into memory before the temporary cache goes away
        decode_rate = len(pixels) / (time.perf_counter() - t0)
    return pixels, decode_rate


def bench_device(model: str, pixels: np.ndarray, device: torch.device, batch: int, steps: int) -> dict:
    amp = device.type == "cuda"
    net, info = build_network(model, "scratch", 8)
    net.to(device).to(memory_format=torch.channels_last)
    make = BatchMaker(pixels, device, info.mean, info.std, AugmentConfig(), channels_last=True)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, len(pixels), batch) for _ in range(steps + 3)]
    # pipeline alone
    for idx in batches[:3]:
        make(idx, gen)
    _sync(device)
    t0 = time.perf_counter()
    for idx in batches[3:]:
        make(idx, gen)
    _sync(device)
    pipeline = steps * batch / (time.perf_counter() - t0)
    # training steps
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and not torch.cuda.is_bf16_supported())
    loss_fn = ClassificationLoss("weighted", np.ones(8)).to(device)
    target = torch.randint(0, 8, (batch,), device=device)
    net.train()
    for idx in batches[:3]:
        train_step(net, opt, scaler, loss_fn, make(idx, gen), target, amp)
    _sync(device)
    t0 = time.perf_counter()
    for idx in batches[3:]:
        train_step(net, opt, scaler, loss_fn, make(idx, gen), target, amp)
    _sync(device)
    train = steps * batch / (time.perf_counter() - t0)
    # inference
    sample = pixels[: min(len(pixels), batch * 4)]
    predict_logits(net, sample, mean=info.mean, std=info.std, device=device, batch_size=batch, amp=amp)
    _sync(device)
    t0 = time.perf_counter()
    predict_logits(net, sample, mean=info.mean, std=info.std, device=device, batch_size=batch, amp=amp)
    _sync(device)
    infer = len(sample) / (time.perf_counter() - t0)
    return {
        "pipeline_images_per_s": pipeline,
        "train_images_per_s": train,
        "infer_images_per_s": infer,
        "amp": amp,
        "channels_last": True,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--data", default=None)
    ap.add_argument("--n", type=int, default=256, help="phantom images when --data is not given")
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pixels, decode_rate = _images(args.data, args.image_size, args.n)
    result = {
        "benchmark": "train_throughput",
        "model": args.model,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "n_images": len(pixels),
        "decode_images_per_s": decode_rate,
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "platform": platform.platform(terse=True),
        "devices": {},
    }
    for name in args.devices.split(","):
        if name == "cuda" and not torch.cuda.is_available():
            result["devices"]["cuda"] = "not available"
            continue
        device = torch.device(name)
        res = bench_device(args.model, pixels, device, args.batch_size, args.steps)
        if device.type == "cuda":
            res["gpu"] = torch.cuda.get_device_name(device)
        result["devices"][name] = res
    out = Path(args.out or f"benchmarks/results/train_throughput-{args.model}-{args.image_size}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"{args.model} @ {args.image_size}px, batch {args.batch_size}; decode {decode_rate:.0f} img/s")
    for dev, res in result["devices"].items():
        if isinstance(res, str):
            print(f"  {dev:5s} {res}")
        else:
            print(
                f"  {dev:5s} pipeline {res['pipeline_images_per_s']:8.0f} img/s   train "
                f"{res['train_images_per_s']:7.1f} img/s   infer {res['infer_images_per_s']:7.1f} img/s"
            )
    print(f"→ {out}")


if __name__ == "__main__":
    main()
