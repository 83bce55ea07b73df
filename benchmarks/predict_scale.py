"""Archive-scale prediction: images/s and peak memory of ``lablens predict --out DIR``, local engine vs Ray.

Command:
    python benchmarks/predict_scale.py --bundle RUN/bundle [--pbc ../shared/data/pbc]
        [--sizes 2000,5000,20000] [--engines local,ray] [--work /tmp/lablens-scale]
        [--device cuda --actor-gpus 1]      # on a GPU machine: torch on the GPU, locally and in the Ray actors
        [--out benchmarks/results/predict_scale.json]

1. **Phantoms** — ``--sizes`` blood-cell phantom images (128 px PNG, written once under ``--work``) are classified
   end to end by the command line in a child process, once per engine. Peak memory is the largest sum of resident
   memory over the child's whole process tree (for Ray: driver, raylet, workers), sampled every 0.1 s from
   ``/proc`` (Linux only); ``wall_s`` is the whole command (start-up included), ``job_images_per_s`` the rate the
   job itself reports (planning to last shard).
2. **PBC** — every image of ``--pbc`` (CellaVision JPEGs, 360×363) through the default path (the bundle's TTA
   policy, ONNX Runtime made on first use), through the same path with full 8-view TTA, and through the
   single-file CSV path with full 8-view TTA (what ``lablens predict`` did by default before adaptive TTA and
   streaming). Accuracy is against the folder names (most PBC images were seen in training, so it is high; what
   matters is the difference between policies on the same images); agreement is with full TTA. With
   ``--pbc-repeat N`` the default path also reads the PBC folder listed N times (an archive of ~5k PBC-size
   JPEGs, start-up paid once).

Run alone: two cores shared with anything else give other figures. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    return total


def run_measured(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd``; its wall time and the peak resident memory of its process tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return {"wall_s": round(time.perf_counter() - t0, 2), "peak_rss_mib": round(peak / 2**20, 1)}


def predict_cmd(bundle: Path, sources: list[str], out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lablens.cli",
        "predict",
        str(bundle),
        *sources,
        "--out",
        str(out),
        "-q",
        *extra,
    ]


def phantoms(work: Path, n: int) -> Path:
    """``n`` blood-cell phantoms (written once; reused by later runs)."""
    from lablens.phantoms import get_task, write_phantoms

    folder = work / f"phantoms-{n}"
    if not (folder / "manifest.csv").is_file():
        write_phantoms(get_task("blood-cells"), folder, n=n, seed=11)
    return folder


def job_facts(out: Path) -> dict[str, Any]:
    s = json.loads((out / "_SUCCESS").read_text())
    df = pd.read_parquet(out)
    return {
        "images": s["images"],
        "job_images_per_s": s["images_per_second"],
        "backend": s["backend"],
        "tta": s["tta"]["text"],
        "share_8_views": round(float((df["tta_views"] == 8).mean()), 4),
    }


def pbc_accuracy(rows: pd.DataFrame, full: pd.DataFrame | None) -> dict[str, Any]:
    truth = rows["path"].map(lambda p: Path(p).parent.name)
    out = {"accuracy": round(float((rows["class_1"] == truth).mean()), 5)}
    if full is not None:
        ref = full.set_index("path").loc[rows["path"], "class_1"].to_numpy()
        out["agreement_with_full_tta"] = round(float((rows["class_1"].to_numpy() == ref).mean()), 5)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--bundle", type=Path, required=True, help="an EfficientNet-Lite0 128 px bundle (lablens train)"
    )
    ap.add_argument("--pbc", type=Path, default=None, help="the PBC folder (../shared/data/pbc)")
    ap.add_argument("--pbc-repeat", type=int, default=3, help="also the default path on PBC listed N times")
    ap.add_argument("--sizes", default="2000,5000,20000")
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--device", default="auto", help="the local engine's device (auto: CPU → ONNX Runtime)")
    ap.add_argument("--actor-gpus", type=float, default=0.0, help="GPUs per Ray model actor (0: CPU actors)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lablens-scale")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/predict_scale.json"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    runs = Path(tempfile.mkdtemp(prefix="jobs-", dir=args.work))
    doc: dict[str, Any] = {
        "command": "python benchmarks/predict_scale.py " + " ".join(sys.argv[1:]),
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "bundle": str(args.bundle),
        "device": args.device,
        "actor_gpus": args.actor_gpus,
        "phantoms": [],
        "pbc": None,
    }
    for n in [int(x) for x in args.sizes.split(",") if x]:
        folder = phantoms(args.work, n)
        for engine in args.engines.split(","):
            out = runs / f"{engine}-{n}"
            extra = ["--engine", engine]
            if engine == "local":
                extra += ["--device", args.device]
            elif args.actor_gpus > 0:
                extra += ["--actor-gpus", str(args.actor_gpus)]
            row = {
                "engine": engine,
                "n": n,
                **run_measured(predict_cmd(args.bundle, [str(folder)], out, *extra)),
            }
            row.update(job_facts(out))
            row["end_to_end_images_per_s"] = round(row["images"] / row["wall_s"], 1)
            doc["phantoms"].append(row)
            print(json.dumps(row), flush=True)
    if args.pbc is not None:
        src = [str(args.pbc)]
        pbc: dict[str, Any] = {"data": str(args.pbc)}
        full_out = runs / "pbc-full"
        pbc["full_tta"] = run_measured(predict_cmd(args.bundle, src, full_out, "--tta", "full"))
        full = pd.read_parquet(full_out)
        pbc["full_tta"].update(job_facts(full_out), **pbc_accuracy(full, None))
        default_out = runs / "pbc-default"
        pbc["default"] = run_measured(predict_cmd(args.bundle, src, default_out))
        pbc["default"].update(job_facts(default_out), **pbc_accuracy(pd.read_parquet(default_out), full))
        csv_out = runs / "pbc-previous.csv"
        pbc["previous_default"] = run_measured(predict_cmd(args.bundle, src, csv_out, "--tta", "full"))
        prev = pd.read_csv(csv_out)
        pbc["previous_default"].update(images=len(prev), **pbc_accuracy(prev, full))
        keys = ["full_tta", "default", "previous_default"]
        if args.pbc_repeat > 1:  # an archive of PBC size: start-up is paid once, as on a real archive
            many_out = runs / "pbc-default-repeated"
            pbc["default_repeated"] = run_measured(predict_cmd(args.bundle, src * args.pbc_repeat, many_out))
            pbc["default_repeated"].update(job_facts(many_out), repeat=args.pbc_repeat)
            keys.append("default_repeated")
        for key in keys:
            pbc[key]["end_to_end_images_per_s"] = round(pbc[key]["images"] / pbc[key]["wall_s"], 1)
        pbc["speedup_default_vs_previous"] = round(
            pbc["default"]["end_to_end_images_per_s"] / pbc["previous_default"]["end_to_end_images_per_s"], 2
        )
        pbc["accuracy_points_default_minus_full"] = round(
            100 * (pbc["default"]["accuracy"] - pbc["full_tta"]["accuracy"]), 3
        )
        doc["pbc"] = pbc
        print(json.dumps(pbc, indent=1), flush=True)
    by = {(r["engine"], r["n"]): r for r in doc["phantoms"]}
    sizes = sorted({r["n"] for r in doc["phantoms"]})
    if len(sizes) > 1:
        doc["rss_ratio_largest_vs_smallest"] = {
            e: round(by[(e, sizes[-1])]["peak_rss_mib"] / by[(e, sizes[0])]["peak_rss_mib"], 3)
            for e in args.engines.split(",")
            if (e, sizes[-1]) in by and (e, sizes[0]) in by
        }
    if all(("ray", n) in by and ("local", n) in by for n in sizes):
        doc["ray_over_local_wall"] = {
            str(n): round(by[("ray", n)]["wall_s"] / by[("local", n)]["wall_s"], 2) for n in sizes
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print("→", args.out)


if __name__ == "__main__":
    main()
