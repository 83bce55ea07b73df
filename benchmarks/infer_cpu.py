"""CPU inference speed: images per second of torch eager vs ONNX Runtime, at batch 1 and batch 32.

Command:
    python benchmarks/infer_cpu.py [--bundle RUN/bundle] [--model efficientnet_lite0] [--size 128]
        [--tta] [--seconds 5] [--out benchmarks/results/infer_cpu.json]

With ``--bundle`` that bundle is copied to a temporary folder and exported there (the original is untouched);
without it, an untrained ``--model`` bundle at ``--size`` is made (speed does not depend on the weights).
Both backends go through :class:`lablens.infer.predictor.Predictor` on the CPU with all cores (the figures
include lablens's own preprocessing, as in use). Each configuration is warmed up, then run for at least
``--seconds``. Prints a table and writes JSON (with the parity figures of the export).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from lablens.infer.bundle import load_bundle, save_bundle
from lablens.infer.onnx_export import check_batch, export_onnx
from lablens.infer.predictor import Predictor
from lablens.models.registry import create_estimator
from lablens.train.context import FitContext


def _untrained_bundle(folder: Path, model: str, size: int, tta: bool) -> Path:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (6, size, size, 3), dtype=np.uint8)
    y = np.array(["a", "b", "c"] * 2)
    est = create_estimator(
        model,
        image_size=size,
        epochs=1,
        batch_size=6,
        augment=None,
        tta=tta,
        weights="scratch",
    ).fit(X, y, context=FitContext(device="cpu"))
    card = {"image_size": size, "resize_mode": "pad", "temperature": 1.0, "metrics": {}}
    save_bundle(folder, est, estimator_name=model, training={"note": "untrained, for timing only"}, **card)
    return folder


def _rate(predictor: Predictor, images: np.ndarray, batch: int, seconds: float) -> float:
    predictor.predict_arrays(images[:batch])  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        predictor.predict_arrays(images[(n % len(images)) : (n % len(images)) + batch])
        n += batch
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--tta", action="store_true", help="untrained bundle: predict with 8-view TTA")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/infer_cpu.json"))
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lablens-infer-"))
    if args.bundle:
        path = Path(shutil.copytree(args.bundle, tmp / "bundle"))
        for name in ("model.onnx", "onnx.json"):
            (path / name).unlink(missing_ok=True)
    else:
        path = _untrained_bundle(tmp / "bundle", args.model, args.size, args.tta)
    export = export_onnx(path)
    b = load_bundle(path)
    images = check_batch(b.image_size, n=64, seed=1)
    backends = {
        "torch_eager": Predictor(b, batch_size=32, device="cpu", backend="torch"),
        "onnxruntime": Predictor(b, batch_size=32, device="cpu", backend="onnx"),
    }
    rows = {}
    for name, pred in backends.items():
        for batch in (1, 32):
            rows[f"{name}@{batch}"] = round(_rate(pred, images, batch, args.seconds), 1)
            print(f"{name:12s} batch {batch:2d}: {rows[f'{name}@{batch}']:8.1f} images/s", flush=True)
    doc = {
        "command": "python benchmarks/infer_cpu.py"
        + (f" --bundle {args.bundle}" if args.bundle else f" --model {args.model} --size {args.size}")
        + (" --tta" if args.tta else ""),
        "machine": platform.platform(),
        "cpu_count": __import__("os").cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "arch": b.card["model"].get("arch") if isinstance(b.card.get("model"), dict) else None,
        "image_size": b.image_size,
        "tta": export.card["tta"],
        "images_per_second": rows,
        "speedup_onnx_vs_torch": {
            str(k): round(rows[f"onnxruntime@{k}"] / rows[f"torch_eager@{k}"], 2) for k in (1, 32)
        },
        "parity": export.card["parity"],
        "export_seconds": export.card["export_seconds"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(json.dumps(doc["speedup_onnx_vs_torch"]), "→", args.out)


if __name__ == "__main__":
    main()
