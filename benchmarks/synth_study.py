"""Synthetic GBI images on neutrophil-inclusion phantoms: ``lablens synth-study`` end to end, timed.

Command:
    python benchmarks/synth_study.py [--work DIR] [--n 1300] [--keep 40] [--seeds 3]
                                     [--out benchmarks/results/synth_study.json]

Writes ``neutrophil-inclusions`` phantoms (seven classes, ~186 images each, 10 per synthetic patient), then runs
the command a lab would run::

    lablens synth-study DATA --classes gbi --keep 40 --out STUDY

with its defaults (one 6:2:2 grouped split; GAN and diffusion at 32 px on the training partition; ratios 1 and 2;
efficientnet_lite0 ImageNet at 64 px, 10 epochs, 3 seeds per arm; real-only, weighted, sampler, focal). GBI is cut
to 40 training images (4 patients) among ~750; validation and test keep their GBI. Prints the GBI table and
writes the summary JSON and ``docs/synth/gbi_real_vs_synthetic.png`` (real training GBI, then GAN, then diffusion).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lablens.phantoms import write_phantoms
from lablens.synth.report import montage

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--work", type=Path, default=None, help="Folder for the phantoms and the study (default: temp)."
    )
    ap.add_argument("--n", type=int, default=1300)
    ap.add_argument("--keep", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "synth_study.json")
    ap.add_argument("--montage", type=Path, default=ROOT / "docs" / "synth" / "gbi_real_vs_synthetic.png")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="synth_study_"))
    data, study = work / "neu", work / "study"
    if not (data / "manifest.csv").exists():
        write_phantoms("neutrophil-inclusions", data, n=args.n, seed=0)
    cmd = ["lablens", "synth-study", str(data), "--classes", "gbi", "--keep", str(args.keep),
           "--seeds", str(args.seeds), "--out", str(study), "-q"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=sys.stdout, stderr=sys.stderr)
    wall = time.perf_counter() - t0
    doc = json.loads((study / "synth_study.json").read_text())
    res = doc["results"]["gbi"]
    summary = {
        "command": " ".join(cmd),
        "wall_seconds": wall,
        "data": {
            "n": args.n,
            "n_train": doc["n_train"],
            "n_val": doc["n_val"],
            "n_test": doc["n_test"],
            "gbi_train": doc["rare_train"]["gbi"],
            "gbi_val": doc["rare_val"]["gbi"],
            "gbi_test": doc["rare_test"]["gbi"],
        },
        "model": doc["model"],
        "seeds": doc["seeds"],
        "best_remedy": res["best_remedy"],
        "arms": {
            arm: {m: s[m] for m in ("sensitivity", "ppv", "f1", "macro_f1", "accuracy")}
            for arm, s in res["scores"].items()
        },
        "tests_vs_real": res["tests_vs_real"],
        "tests_vs_best_remedy": res["tests_vs_best_remedy"],
        "generators": {
            m: {
                "seconds": g["seconds"],
                "epochs_trained": g["epochs_trained"],
                "best_epoch": g["best_epoch"],
                "quality": g["quality"]["gbi"],
            }
            for m, g in doc["generators"].items()
        },
        "timings_s": doc["timings_s"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    rows = [_images(sorted((data / "gbi").glob("*.png")), train=study)]
    rows += [_images(sorted((study / "synthetic" / m / "gbi").glob("*.png"))) for m in doc["generators"]]
    args.montage.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(montage(rows, tile=64, columns=10)).save(args.montage)
    print(
        f"\nwall {wall / 60:.1f} min · GBI train {doc['rare_train']['gbi']}, test {doc['rare_test']['gbi']}"
    )
    print(f"{'arm':22s} {'sensitivity':>20s} {'PPV':>20s} {'F1':>20s} {'macro F1':>20s}")
    for arm, s in summary["arms"].items():
        cells = [_fmt(s[m]) for m in ("sensitivity", "ppv", "f1", "macro_f1")]
        mark = " *" if arm == res["best_remedy"] else ""
        print(f"{arm + mark:22s} " + " ".join(f"{c:>20s}" for c in cells))
    for m, g in summary["generators"].items():
        q = next(iter(g["quality"]["features"].values()))
        print(f"{m}: KID {q['synthetic_vs_real']['kid']:.3f} (real vs real {q['real_vs_real']['kid']:.3f}), "
              f"memorisation flags {g['quality']['memorisation']['flagged']}/{g['quality']['memorisation']['checked']}, "
              f"{g['seconds'] / 60:.1f} min")  # fmt: skip
    print(f"wrote {args.out} and {args.montage}")


def _images(paths: list[Path], train: Path | None = None, n: int = 10) -> np.ndarray:
    """The first ``n`` images (for real images: of the study's training partition only)."""
    if train is not None:
        split = json.loads((train / "split.json").read_text())
        kept = set(split["folds"][0]["train"])
        paths = [p for p in paths if f"gbi/{p.name}" in kept]
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((32, 32), Image.Resampling.LANCZOS))
                     for p in paths[:n]])  # fmt: skip


def _fmt(s: dict) -> str:
    return f"{s['value']:.3f} ({s['ci'][0]:.2f}–{s['ci'][1]:.2f})" if s["ci"] else f"{s['value']}"


if __name__ == "__main__":
    main()
