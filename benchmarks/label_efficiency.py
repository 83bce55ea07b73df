"""Learning curves for a new lab with few labels: how many labelled cells does lablens need, and from where?

Command:
    python benchmarks/label_efficiency.py [--data ../shared/data/pbc] [--budgets 5,10,25,50,100] [--seeds 3]
        [--image-size 64] [--out benchmarks/results/label_efficiency.json]

On one grouped split of the data (``8:1:1``, seed 0, as ``lablens train`` makes it): the **pool** is its training
partition (labels hidden until a strategy asks for them), the **test** set its test partition. Budgets are labels
per class × the number of classes, in total (a selection strategy does not know the classes of unlabelled cells).

1. **Selection** — ``head`` (a linear head on frozen EfficientNet-Lite0 ImageNet embeddings, the family for tiny
   label sets): *random* (a seeded draw, nested across budgets) vs *suggested* (``lablens suggest``'s rule:
   :func:`lablens.infer.acquisition.suggest_rows`, margin uncertainty + k-center diversity on the head's
   embeddings) in rounds: the first budget is the same random draw for both; each later round labels what the
   rule picks with the head trained on the labels so far. ``--seeds`` seeds each.
2. **Where to start** — at ``--start-budget`` labels per class (random, per seed): fine-tuning EfficientNet-Lite0
   from scratch, from ImageNet, and warm-started from a bundle trained on blood-cell phantoms (``model.init``;
   ``lablens phantom blood-cells``, ``--phantom-n`` images), with lablens's default schedule (no epoch or step
   setting), and ``head`` on ImageNet embeddings; 80 % of the labels train, 20 % validate (the deep runs), the
   head uses all of them. Wall time per fit.

Accuracy and macro-F1 on the test set with bootstrap 95 % CIs (images resampled: the data has no patients), the
mean over seeds, a plot (``<out>.png``) and JSON. Run it alone (it uses both cores).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _decode(data: Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every image of an ImageFolder at ``size`` px (padded square), its class index and the class names."""
    from lablens.data.io import read_image
    from lablens.data.preprocess import to_square

    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    files = [(f, k) for k, c in enumerate(classes) for f in sorted((data / c).glob("*.jpg"))]
    X = np.stack([to_square(read_image(f).pixels, size, "pad") for f, _ in files])
    return X, np.array([k for _, k in files]), classes


def _metrics(y: np.ndarray, proba: np.ndarray, classes: list[str], seed: int) -> dict[str, Any]:
    from lablens.evaluate.summary import evaluate_predictions

    doc = evaluate_predictions(y, proba, classes, n_boot=1000, seed=seed, top_k=())
    return {k: doc["overall"][k] for k in ("accuracy", "macro_f1")}


def _head(X: np.ndarray, y: np.ndarray, classes: list[str], size: int, **params: Any) -> Any:
    from lablens.models.registry import create_estimator
    from lablens.train.context import FitContext

    est = create_estimator("head", weights="imagenet", image_size=size, **params)
    return est.fit(X, np.asarray(classes)[y], context=FitContext(device="cpu", threads=2))


def _selection_curves(X, y, pool, test, classes, budgets, seeds, size) -> dict[str, Any]:
    from lablens.infer.acquisition import suggest_rows

    totals = [b * len(classes) for b in budgets]
    out: dict[str, Any] = {"budgets_total": totals, "random": [], "suggested": []}
    for seed in range(seeds):
        draw = np.random.default_rng([seed, 7]).permutation(pool)
        runs = {"random": [], "suggested": []}
        for total in totals:  # random: nested draws
            est = _head(X[draw[:total]], y[draw[:total]], classes, size)
            runs["random"].append(_metrics(y[test], est.predict_proba(X[test]), classes, seed))
        labelled = list(draw[: totals[0]])
        for i, total in enumerate(totals):
            if i:
                est_pool = _head(X[labelled], y[labelled], classes, size)
                proba, emb = est_pool.predict_proba(X[pool]), est_pool.embed(X[pool])
                known = np.isin(pool, labelled)
                batch = suggest_rows(proba, emb, ~known, known, total - len(labelled), seed=seed)
                labelled += [int(pool[r]) for r in batch.rows]
            est = _head(X[labelled], y[labelled], classes, size)
            runs["suggested"].append(_metrics(y[test], est.predict_proba(X[test]), classes, seed))
            print(f"seed {seed} {total:4d} labels  random acc {runs['random'][i]['accuracy']['value']:.3f}  "
                  f"suggested acc {runs['suggested'][i]['accuracy']['value']:.3f}", flush=True)  # fmt: skip
        for arm in runs:
            out[arm].append(runs[arm])
    for arm in ("random", "suggested"):
        out[f"{arm}_mean_accuracy"] = [
            float(np.mean([run[i]["accuracy"]["value"] for run in out[arm]])) for i in range(len(totals))
        ]
        out[f"{arm}_mean_macro_f1"] = [
            float(np.mean([run[i]["macro_f1"]["value"] for run in out[arm]])) for i in range(len(totals))
        ]
    return out


def _phantom_bundle(work: Path, size: int, n: int) -> Path:
    """A bundle fine-tuned from ImageNet on blood-cell phantoms (the 'related bundle' a new lab might have)."""
    bundle = work / "phantom_run" / "bundle"
    if bundle.exists():
        return bundle
    from lablens.config import RunConfig
    from lablens.phantoms import get_task
    from lablens.phantoms.write import write_phantoms
    from lablens.workflows.train import train

    write_phantoms(get_task("blood-cells"), work / "phantoms", n=n, seed=11, size=size)
    cfg = RunConfig()
    cfg.model.name, cfg.model.weights, cfg.model.image_size = "efficientnet_lite0", "imagenet", size
    cfg.eval.bootstrap = 0
    train(work / "phantoms", work / "phantom_run", cfg, progress=False)
    return bundle


def _starts(X, y, pool, test, classes, per_class, seeds, size, phantom: Path) -> dict[str, Any]:
    from lablens.models.registry import create_estimator
    from lablens.train.context import FitContext

    arms = {
        "scratch": {"weights": "scratch"},
        "imagenet": {"weights": "imagenet"},
        "warm_start_phantoms": {"init": str(phantom)},
    }
    out: dict[str, Any] = {"labels_per_class": per_class, **{a: [] for a in (*arms, "head")}}
    names = np.asarray(classes)
    for seed in range(seeds):
        rng = np.random.default_rng([seed, 11])
        picks = [rng.choice(pool[y[pool] == k], per_class, replace=False) for k in range(len(classes))]
        n_val = max(1, round(0.2 * per_class))
        train = np.concatenate([p[n_val:] for p in picks])
        val = np.concatenate([p[:n_val] for p in picks])
        for arm, params in arms.items():
            t0 = time.perf_counter()
            est = create_estimator("efficientnet_lite0", image_size=size, seed=seed, **params)
            est.fit(
                X[train], names[y[train]], X[val], names[y[val]], context=FitContext(device="cpu", threads=2)
            )
            seconds = time.perf_counter() - t0
            m = _metrics(y[test], est.predict_proba(X[test], device="cpu"), classes, seed)
            out[arm].append({**m, "fit_seconds": seconds, "steps": est.steps_})
            print(
                f"seed {seed} {arm:20s} acc {m['accuracy']['value']:.3f}  {seconds:.0f} s  {est.steps_} steps",
                flush=True,
            )
        t0 = time.perf_counter()
        head = _head(X[np.concatenate(picks)], y[np.concatenate(picks)], classes, size, cache=False)
        seconds = time.perf_counter() - t0
        m = _metrics(y[test], head.predict_proba(X[test]), classes, seed)
        out["head"].append({**m, "fit_seconds": seconds})
        print(f"seed {seed} {'head':20s} acc {m['accuracy']['value']:.3f}  {seconds:.1f} s", flush=True)
    for arm in (*arms, "head"):
        out[f"{arm}_mean_accuracy"] = float(np.mean([r["accuracy"]["value"] for r in out[arm]]))
    return out


def _plot(sel: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    for arm, colour in (("random", "tab:grey"), ("suggested", "tab:blue")):
        ax.plot(sel["budgets_total"], sel[f"{arm}_mean_accuracy"], "o-", color=colour, label=arm)
    ax.set_xscale("log")
    ax.set_xticks(sel["budgets_total"], [str(b) for b in sel["budgets_total"]])
    ax.minorticks_off()
    ax.set_xlabel("labelled cells (total)")
    ax.set_ylabel("test accuracy (mean of seeds)")
    ax.set_title("head on EfficientNet-Lite0 ImageNet embeddings")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "pbc")
    ap.add_argument("--budgets", default="5,10,25,50,100")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--start-budget", type=int, default=10)
    ap.add_argument("--phantom-n", type=int, default=800)
    ap.add_argument("--work", type=Path, default=Path("/tmp/lablens-label-efficiency"))
    ap.add_argument("--skip-starts", action="store_true", help="Only the selection curves.")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "label_efficiency.json")
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 2
    from lablens.data.splits import make_split

    t0 = time.perf_counter()
    X, y, classes = _decode(args.data, args.image_size)
    fold = make_split(y, np.arange(len(y)), "8:1:1", seed=0).folds[0]
    pool, test = np.asarray(fold.train), np.asarray(fold.test)
    budgets = [int(b) for b in args.budgets.split(",")]
    print(f"{len(X)} images, {len(classes)} classes; pool {len(pool)}, test {len(test)}", flush=True)
    doc: dict[str, Any] = {
        "data": str(args.data),
        "split": "8:1:1 seed 0: pool = train partition, test = test partition",
        "image_size": args.image_size,
        "machine": f"{platform.processor() or platform.machine()}, torch threads 2",
        "selection": _selection_curves(X, y, pool, test, classes, budgets, args.seeds, args.image_size),
    }
    if not args.skip_starts:
        args.work.mkdir(parents=True, exist_ok=True)
        phantom = _phantom_bundle(args.work, args.image_size, args.phantom_n)
        doc["starts"] = _starts(
            X, y, pool, test, classes, args.start_budget, args.seeds, args.image_size, phantom
        )
    doc["seconds"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    _plot(doc["selection"], args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')} in {doc['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
