"""Accuracy under blur (issue 5's table): single-task, blur-augmented, de-blur-then-classify, multi-task.

Command:
    python benchmarks/quality.py [--datasets pbc,kidney-if] [--size 96] [--epochs 8] [--levels 0-4]
        [--model efficientnet_lite0] [--weights imagenet] [--n 800] [--threads 2] [--seed 0]
        [--keep DIR] [--out benchmarks/results/quality.json]

``pbc`` is ../shared/data/pbc (skipped with a note when absent); ``kidney-if`` generates ``--n`` kidney
immunofluorescence phantoms in ``--n // 4`` biopsies. Each dataset runs ``lablens blur-study`` (one grouped
8:1:1 split; every test image degraded at every level, the same recipe for every arm). On a CUDA machine
the default size becomes 224 (full size). Prints the accuracy table, de-blurring PSNR/SSIM and quality-gate
flag rates per level, and writes one JSON with every study document.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from lablens.config import RunConfig
from lablens.phantoms import write_phantoms
from lablens.workflows.blur_study import ARMS, blur_study

SHARED_PBC = Path(__file__).resolve().parents[2] / "shared" / "data" / "pbc"


def _config(args: argparse.Namespace, size: int) -> RunConfig:
    cfg = RunConfig()
    cfg.model.name, cfg.model.weights, cfg.model.image_size = args.model, args.weights, size
    cfg.train.epochs, cfg.train.threads, cfg.train.seed, cfg.split.seed = (
        args.epochs,
        args.threads,
        args.seed,
        args.seed,
    )
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="pbc,kidney-if")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--levels", default="0-4")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--n", type=int, default=800)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="keep the study folders here")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/quality.json"))
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    size = args.size or (224 if cuda else 96)
    torch.set_num_threads(args.threads)
    work = args.keep or Path(tempfile.mkdtemp(prefix="lablens-quality-"))
    results, notes = {}, []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        if name == "pbc":
            if not SHARED_PBC.exists():
                notes.append(f"pbc skipped: {SHARED_PBC} is absent")
                continue
            data = SHARED_PBC
        else:
            data = work / f"{name}-phantoms"
            if not data.exists():
                write_phantoms(name, data, n=args.n, seed=args.seed, size=max(size, 96), groups=args.n // 4)
        t0 = time.perf_counter()
        doc = blur_study(data, work / f"{name}-study", _config(args, size), levels=args.levels).doc
        doc["wall_s"] = time.perf_counter() - t0
        results[name] = doc
        _write(args, size, cuda, notes, results)  # after every dataset: an interrupted run keeps what it did
    for name, doc in results.items():
        print(f"\n{name}: accuracy by blur level ({doc['n_test']} test images, {doc['wall_s']:.0f} s)")
        print("arm".ljust(22) + "".join(f"L{lv}".rjust(8) for lv in doc["levels"]))
        for arm in ARMS:
            accs = {r["level"]: r["accuracy"] for r in doc["rows"] if r["arm"] == arm}
            print(arm.ljust(22) + "".join(f"{accs[lv]:8.3f}" for lv in doc["levels"]))
        print(
            "PSNR blurred → de-blurred: "
            + ", ".join(
                f"L{k} {v['psnr_blurred']:.1f}→{v['psnr_deblurred']:.1f}"
                for k, v in doc["deblur"].items()
                if k != "0"
            )
        )
        print(
            "gate flagged (head / blur_level model): "
            + ", ".join(
                f"L{k} {100 * (v['head_flagged'] or 0):.0f}%/{100 * v['blur_level_model_flagged']:.0f}%"
                for k, v in doc["gate"].items()
            )
        )
    print(f"\nwrote {args.out}")


def _write(args: argparse.Namespace, size: int, cuda: bool, notes: list[str], results: dict) -> None:
    report = {
        "benchmark": "quality",
        "command": "python benchmarks/quality.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"
        ),
        "image_size": size,
        "device": "cuda" if cuda else "cpu",
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
        "notes": notes,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
