"""Slide-level ANA calls on ../shared/data/ana-fields from slide labels only: leave one slide out.

Command:
    python benchmarks/ana_fields_mil.py [--model mil|mil-mean] [--image-size 64] [--epochs 8]
        [--weights imagenet] [--out benchmarks/results/ana_fields_mil-<model>.json]

31 fields of 24 slides (``X-1-t.jpg`` is a second field of slide ``X-1``), 8 slide labels (6 nuclear patterns,
AMA and FIB cytoplasmic, NEG). Cells are found with the ``ana`` preset's nuclei detector (scale bar left out),
cropped at 24 µm; each of the 24 folds trains a multiple-instance model on 23 slides and calls the one left out
(no validation slides: the epoch with the lowest training loss is kept). Prints and writes the slide accuracy with its 95 % CI, the
per-class calls and the confusion matrix.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from lablens.config import build_config
from lablens.workflows.train_samples import train_samples

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ana-fields"
ANA_BAR = (0, 0, 420, 80)  # the burned-in scale bar and its label, top left of every image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--model", default="mil")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--cells-per-bag", type=int, default=12)
    ap.add_argument("--bags-per-sample", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    labels = pd.read_csv(a.data / "labels.csv", dtype=str)
    fields = pd.DataFrame(
        {
            "path": [str(a.data / p) for p in labels["path"]],
            "sample": labels["path"].str.replace(r"(-t)?\.jpg$", "", regex=True),
            "label": labels["slide_label"],
        }
    )
    cfg = build_config(
        None,
        {
            "model.name": a.model,
            "model.weights": a.weights,
            "model.image_size": a.image_size,
            "model.tta": False,
            "model.params": {"cells_per_bag": a.cells_per_bag, "bags_per_sample": a.bags_per_sample},
            "train.epochs": a.epochs,
            "train.batch_size": 8,
            "train.patience": None,
            "split.protocol": "leave-one-out",
            "eval.calibrate": False,
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        fields.to_csv(Path(tmp) / "fields.csv", index=False)
        t0 = time.perf_counter()
        res = train_samples(
            Path(tmp) / "fields.csv", Path(tmp) / "run", cfg, task="ana", ignore_regions=[ANA_BAR]
        )
        seconds = time.perf_counter() - t0
        samples = pd.read_csv(Path(tmp) / "run" / "samples.csv", dtype=str)
    pred = res.predictions
    doc = {
        "command": "python benchmarks/ana_fields_mil.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if k not in ("out", "data")),
        "protocol": "leave one slide out (24 folds)",
        "slides_right": f"{int(pred['correct'].sum())}/{len(pred)}",
        "accuracy": res.metrics["overall"]["accuracy"],
        "per_slide": pred[["sample", "label", "predicted", "probability", "n_cells"]].to_dict("records"),
        "cells_per_slide": samples.set_index("sample")["n_cells"].astype(int).to_dict(),
        "confusion": res.metrics["confusion_matrix"],
        "seconds": round(seconds, 1),
    }
    print(json.dumps({k: doc[k] for k in ("slides_right", "accuracy", "seconds")}, indent=1))
    print(pred[["sample", "label", "predicted", "probability", "n_cells"]].to_string(index=False))
    out = a.out or Path(f"benchmarks/results/ana_fields_mil-{a.model}.json")
    out.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
