"""Whole-cell detection on cytoplasmic IIF phantoms: the learned detector (trained on boxes) vs the ``cells`` rules.

Command:
    python benchmarks/learned_cells.py [--train-fields 60] [--epochs 20] [--out benchmarks/results/learned_cells.json]

Trains ``LearnedDetector`` on ``ana-hep2-cyto`` phantom fields of one seed (boxes only, 512 px), then scores it and
the rule-based ``cells`` detector on fields of two other seeds never used for training or selection: recall and
precision at box IoU >= 0.5 per pattern (fibrillar, mitochondrial). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from lablens.data.io import read_image
from lablens.evaluate.detection import Counts, score_image
from lablens.fields.annotations import read_phantom_cells
from lablens.fields.detection import create_detector
from lablens.fields.learned import LearnedDetector
from lablens.phantoms import get_task
from lablens.phantoms.write import write_phantoms
from lablens.progress import RichProgress
from lablens.train.context import FitContext

SIZE = 512


def fields(root: Path, n: int, seed: int) -> list[tuple]:
    """``(image, boxes, um_per_px, pattern)`` of the positive phantom fields of one seed."""
    write_phantoms(get_task("ana-hep2-cyto"), root, n=n, seed=seed, fields=True, size=SIZE)
    man = pd.read_csv(root / "manifest.csv", dtype=str)
    truth = read_phantom_cells(root / "cells.csv")
    return [
        (read_image(root / r.path).pixels, [b for _, b in truth[r.path]], float(r.field_um) / SIZE, r.label)
        for r in man[man["label"] != "negative"].itertuples()
    ]


def score(make: callable, data: list[tuple]) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, Counts]] = {}
    for img, boxes, um, label in data:
        found = make(um).detect(img)
        score_image(
            [("cell", d.box, d.score) for d in found], [("cell", b) for b in boxes], ["cell"], 0.5,
            totals.setdefault(label, {}),
        )  # fmt: skip
    return {
        k: {
            "recall": round(t["cell"].recall, 3),
            "precision": round(t["cell"].precision, 3),
            "cells": t["cell"].tp + t["cell"].fn,
        }
        for k, t in totals.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--train-fields", type=int, default=60, help="phantom fields (a third negative) to train on"
    )
    ap.add_argument("--train-seed", type=int, default=4)
    ap.add_argument("--test-seeds", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--test-fields", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/learned_cells.json"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        train = fields(Path(tmp) / "train", a.train_fields, a.train_seed)
        t0 = time.perf_counter()
        with RichProgress() as prog:
            det = LearnedDetector(epochs=a.epochs).fit(
                [f[0] for f in train], [f[1] for f in train], um_per_px=[f[2] for f in train],
                context=FitContext(progress=prog, device="cpu"),
            )  # fmt: skip
        train_s = time.perf_counter() - t0
        doc: dict = {
            "train": {
                "fields": len(train),
                "seed": a.train_seed,
                "epochs": a.epochs,
                "seconds": round(train_s),
            }
        }
        learned = lambda um: det.set_params(um_per_px=um)  # noqa: E731
        rules: callable = lambda um: create_detector("cells", um_per_px=um)  # noqa: E731
        for seed in a.test_seeds:
            test = fields(Path(tmp) / f"test{seed}", a.test_fields, seed)
            t0 = time.perf_counter()
            doc[f"seed{seed}"] = {"learned": score(learned, test)}
            doc[f"seed{seed}"]["learned_s_per_field"] = round((time.perf_counter() - t0) / len(test), 3)
            doc[f"seed{seed}"]["cells_rules"] = score(rules, test)
    for key, val in doc.items():
        if key.startswith("seed"):
            for name in ("learned", "cells_rules"):
                line = "  ".join(
                    f"{p} R {v['recall']:.3f} P {v['precision']:.3f} (n {v['cells']})"
                    for p, v in val[name].items()
                )
                print(f"{key} {name:12s} {line}")
    print(f"training: {doc['train']}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
