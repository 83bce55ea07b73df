"""The out-of-distribution guard and the field quality gate, measured.

Command:
    python benchmarks/guard_and_gate.py [--work /tmp/lablens-guard] [--bundle RUN/bundle --pbc-run RUN
        --bccd-crops DIR --ana-fields DIR] [--out benchmarks/results/guard_and_gate.json]

1. **OOD on phantoms** — a blood-cell phantom bundle (handcrafted, 400 images at 64 px, trained by
   ``lablens train``) classifies 300 unseen blood phantoms (another seed), 300 ANA and 300 kidney phantoms; the
   share flagged out of distribution at the default flag rate (1 %).
2. **Quality gate on fields** — blood smear phantom fields (20, 320 px) at defocus σ = 0, 2, 4, 6 px; a blur-level
   quality bundle trained on ``lablens degrade`` copies of the training cells; ``lablens analyze --quality``:
   the share of fields judged not evaluable at each σ, and the cells held back.
3. **OOD on real data** (with ``--bundle``, a PBC bundle trained by lablens ≥ 0.3): ``lablens predict`` on the
   run's PBC test images, on BCCD white-cell crops (``lablens crop-cells … --task blood``: another microscope and
   stain), and on the ANA IIF fields; shares flagged and the submission verdicts.

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from lablens.config import RunConfig
from lablens.phantoms import write_phantoms
from lablens.workflows.analyze import analyze
from lablens.workflows.degrade import degrade
from lablens.workflows.predict import predict
from lablens.workflows.train import train

SIGMAS = (0, 2, 4, 6)


def _cfg(model: str, size: int, label: str = "label") -> RunConfig:
    cfg = RunConfig()
    cfg.model.name, cfg.model.image_size, cfg.data.label_column = model, size, label
    cfg.train.threads, cfg.eval.bootstrap = 2, 0
    return cfg


def _flagged(bundle: Path, inputs: list[Path], out: Path) -> dict[str, Any]:
    res = predict(bundle, inputs, out, progress=False)
    doc = json.loads(out.read_text())["out_of_distribution"]
    return {
        "images": len(res.paths),
        "flagged": res.n_out_of_distribution,
        "share": round(res.n_out_of_distribution / max(1, len(res.paths)), 4),
        "submission_flagged": doc["submission"]["flagged"],
        "reasons": doc["submission"]["reasons"],
    }


def phantoms_ood(work: Path) -> dict[str, Any]:
    write_phantoms("blood-cells", work / "blood", n=400, seed=0, size=64)
    bundle = train(work / "blood", work / "run", _cfg("handcrafted", 64), progress=False).bundles[0]
    out: dict[str, Any] = {}
    for task, seed in (("blood-cells", 1), ("ana-hep2", 0), ("kidney-if", 0)):
        write_phantoms(task, work / f"{task}-{seed}", n=300, seed=seed)
        out[task if seed == 0 else "blood-cells (unseen seed)"] = _flagged(
            bundle, [work / f"{task}-{seed}"], work / f"{task}-{seed}.json"
        )
    return out


def field_gate(work: Path) -> dict[str, Any]:
    write_phantoms("blood-cells", work / "cells", n=400, seed=1, size=48)
    cells = train(work / "cells", work / "crun", _cfg("handcrafted", 48), progress=False).bundles[0]
    degrade(work / "cells", work / "deg", levels="0-4", kinds="defocus,gaussian", progress=False)
    quality = train(
        work / "deg", work / "qrun", _cfg("blur_level", 48, "blur_level"), progress=False
    ).bundles[0]
    write_phantoms("blood-cells", work / "fields", n=20, seed=2, fields=True, size=320)
    man = pd.read_csv(work / "fields" / "manifest.csv")
    scale = float(man["field_um"].mean() / 320)
    out: dict[str, Any] = {}
    for sigma in SIGMAS:
        folder = work / f"fields-s{sigma}"
        folder.mkdir(exist_ok=True)
        for p in man["path"]:
            img = np.asarray(Image.open(work / "fields" / p).convert("RGB"))
            if sigma:
                img = cv2.GaussianBlur(img, (0, 0), sigma)
            Image.fromarray(img).save(folder / Path(p).name)
        res = analyze(
            cells,
            [folder],
            work / f"analyze-s{sigma}",
            um_per_px=scale,
            quality=quality,
            min_cells=1,
            progress=False,
        )
        fields = pd.read_csv(work / f"analyze-s{sigma}" / "fields.csv")
        wbc = res.cells[res.cells["kind"] == "wbc"]
        out[f"sigma_{sigma}"] = {
            "fields": len(fields),
            "not_evaluable_fields": int((~fields["evaluable"].astype(bool)).sum()),
            "median_field_score": round(float(fields["quality_score"].median()), 3),
            "wbc": len(wbc),
            "wbc_not_evaluable": int((wbc["status"] == "not_evaluable").sum()),
        }
    return out


def real_ood(bundle: Path, run: Path, bccd: Path | None, ana: Path | None, work: Path) -> dict[str, Any]:
    split = json.loads((run / "split.json").read_text())["folds"][0]
    manifest = pd.read_csv(run / "manifest.csv")
    test = manifest.loc[manifest["id"].isin(split["test"]), "path"].tolist()
    out = {"pbc_test": _flagged(bundle, [Path(p) for p in test], work / "pbc_test.json")}
    if bccd is not None:
        out["bccd_wbc_crops"] = _flagged(bundle, [bccd], work / "bccd.json")
    if ana is not None:
        out["ana_iif_fields"] = _flagged(bundle, [ana], work / "ana.json")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/lablens-guard"))
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--pbc-run", type=Path)
    ap.add_argument("--bccd-crops", type=Path)
    ap.add_argument("--ana-fields", type=Path)
    ap.add_argument("--skip-phantoms", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/guard_and_gate.json"))
    args = ap.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = args.work / stamp
    work.mkdir(parents=True)
    doc: dict[str, Any] = {"machine": platform.platform(), "date": time.strftime("%Y-%m-%d")}
    if not args.skip_phantoms:
        doc["ood_phantoms"] = phantoms_ood(work / "ood")
        doc["field_quality_gate"] = field_gate(work / "gate")
    if args.bundle is not None:
        if args.pbc_run is None:
            ap.error("--bundle needs --pbc-run (its split gives the unseen test images)")
        doc["ood_real"] = real_ood(args.bundle, args.pbc_run, args.bccd_crops, args.ana_fields, work)
    print(json.dumps(doc, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
