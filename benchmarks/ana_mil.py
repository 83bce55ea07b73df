"""ANA patterns learnt from sample labels only (multiple-instance learning) on phantom HEp-2 fields.

Command:
    python benchmarks/ana_mil.py [--fields-per-class 24] [--size 384] [--image-size 64] [--epochs 12]
        [--model mil] [--weights imagenet] [--split 6:2:2] [--seed 0] [--out benchmarks/results/ana_mil.json]

Phantom fields of the 8 field classes (7 nuclear patterns + negative) are grouped into samples of two fields:
``pure`` samples (two fields of one pattern) and ``mixed`` samples (one field of the pattern + one negative
field, labelled with the pattern: the dim cells of the negative field carry no pattern). Only the sample label is
given. ``lablens train --label-level sample`` trains on the training samples; the figures are on held-out
samples (grouped hold-out, never seen in training or model selection):

* sample accuracy with its 95 % CI (samples are the bootstrap unit);
* attention concentration on mixed held-out samples: the share of attention on the cells of the pattern field,
  next to the share of cells that field holds (attention that ignores the cells equals the cell share).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from lablens.config import build_config
from lablens.phantoms import get_task
from lablens.phantoms.write import write_phantoms
from lablens.workflows.train_samples import train_samples


def make_samples(root: Path, per_class: int, size: int, seed: int) -> pd.DataFrame:
    """Samples of two fields: per pattern, ``per_class * 3 // 8`` pure samples and ``per_class // 4`` mixed ones
    (pattern + a negative field used nowhere else); negative samples pair negative fields. No field is in two
    samples."""
    task = get_task("ana-hep2")
    n_classes = len(task.fields.classes)
    n_mixed = per_class // 4
    write_phantoms(task, root / "f", n=per_class * n_classes, seed=seed, fields=True, size=size)
    extra = (n_classes - 1) * n_mixed  # one more negative field per mixed sample
    write_phantoms(task, root / "g", n=extra * n_classes, seed=seed + 1, fields=True, size=size)
    frames = []
    for sub in ("f", "g"):
        man = pd.read_csv(root / sub / "manifest.csv", dtype=str)
        man["path"] = sub + "/" + man["path"]
        frames.append(man if sub == "f" else man[man["label"] == "negative"])
    man = pd.concat(frames, ignore_index=True)
    man["um_per_px"] = man["field_um"].astype(float) / size
    spare = man[(man["label"] == "negative")].index.tolist()[per_class:]  # the second run's negatives
    rows = []

    def add(sample: str, label: str, kind: str, fields: list[tuple[int, str]]) -> None:
        for field, role in fields:
            rows.append(
                {
                    "path": man.loc[field, "path"],
                    "sample": sample,
                    "label": label,
                    "um_per_px": man.loc[field, "um_per_px"],
                    "kind": kind,
                    "role": role,
                }
            )

    for label, df in man.iloc[: per_class * n_classes].groupby("label"):
        idx = df.index.tolist()
        mixed = [] if label == "negative" else idx[:n_mixed]
        rest = idx[len(mixed) :]
        for k in range(0, len(rest) - 1, 2):
            add(f"{label}-pure-{k // 2:02d}", label, "pure", [(rest[k], "pattern"), (rest[k + 1], "pattern")])
        for k, field in enumerate(mixed):
            add(f"{label}-mixed-{k:02d}", label, "mixed", [(field, "pattern"), (spare.pop(), "negative")])
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fields-per-class", type=int, default=24)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--model", default="mil")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--split", default="6:2:2")
    ap.add_argument("--cells-per-bag", type=int, default=12)
    ap.add_argument("--bags-per-sample", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ana_mil.json"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        samples = make_samples(root, a.fields_per_class, a.size, a.seed)
        samples.to_csv(root / "fields.csv", index=False)
        t_data = time.perf_counter() - t0
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
                "train.seed": a.seed,
                "split.protocol": a.split,
                "split.seed": a.seed,
                "train.device": "auto",
            },
        )
        t0 = time.perf_counter()
        res = train_samples(root / "fields.csv", root / "run", cfg, task="ana", progress=True)
        t_train = time.perf_counter() - t0
        pred = res.predictions
        cells = pd.read_csv(root / "run" / "cells.csv", dtype={"sample": str})
        roles = samples.assign(field=[str(root / p) for p in samples["path"]])[
            ["sample", "field", "role", "kind"]
        ]
        cells = cells.merge(roles, on=["sample", "field"], how="left")
        mixed = cells[cells["kind"] == "mixed"]
        conc = []
        for s, df in mixed.groupby("sample"):
            on = df["role"] == "pattern"
            conc.append(
                {
                    "sample": s,
                    "attention": float(df.loc[on, "attention"].sum()),
                    "cell_share": float(on.mean()),
                }
            )
        conc_df = pd.DataFrame(conc)
        m = res.metrics["overall"]
        kinds = samples.drop_duplicates("sample").set_index("sample")["kind"]
        pred["kind"] = pred["sample"].map(kinds)
        doc = {
            "command": "python benchmarks/ana_mil.py "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if k != "out"),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "seconds": {"data": round(t_data, 1), "train_and_evaluate": round(t_train, 1)},
            "n_samples": int(samples["sample"].nunique()),
            "n_test_samples": len(pred),
            "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"],
            "accuracy_pure": float(pred.loc[pred["kind"] == "pure", "correct"].mean()),
            "accuracy_mixed": float(pred.loc[pred["kind"] == "mixed", "correct"].mean()),
            "attention_on_pattern_field": {
                "n_mixed_test_samples": len(conc_df),
                "mean_attention": float(conc_df["attention"].mean()) if len(conc_df) else None,
                "mean_cell_share": float(conc_df["cell_share"].mean()) if len(conc_df) else None,
            },
            "confusion": res.metrics["confusion_matrix"],
        }
    print(json.dumps({k: v for k, v in doc.items() if k != "confusion"}, indent=1))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
