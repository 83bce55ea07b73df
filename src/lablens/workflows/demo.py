"""``lablens demo``: the whole flow on built-in synthetic phantoms, on a laptop CPU in a few minutes."""

from __future__ import annotations

from pathlib import Path

from lablens.config import RunConfig
from lablens.errors import RunError
from lablens.home import default_output, unique_dir
from lablens.phantoms import PHANTOMS, write_phantoms
from lablens.progress import console, make_progress
from lablens.workflows.predict import predict
from lablens.workflows.train import TrainResult, train


def demo_config(
    image_size: int = 64, epochs: int = 8, model: str = "efficientnet_lite0", weights: str = "imagenet"
) -> RunConfig:
    cfg = RunConfig()
    cfg.model.name = model
    cfg.model.weights = weights
    cfg.model.image_size = image_size
    cfg.train.epochs = epochs
    cfg.train.batch_size = 32
    cfg.train.patience = None
    cfg.eval.bootstrap = 500
    return cfg


def demo(
    out: str | Path | None = None,
    *,
    task: str = "blood-cells",
    n: int = 800,
    image_size: int = 64,
    epochs: int = 8,
    model: str = "efficientnet_lite0",
    weights: str = "imagenet",
    seed: int = 0,
    progress: bool = True,
) -> TrainResult:
    """Generate phantoms for ``task``, train and evaluate a model, predict a few images, print the report path."""
    if task not in PHANTOMS:
        raise RunError(f"unknown demo task {task!r}; choose one of {', '.join(PHANTOMS.names())}")
    out = unique_dir(Path(out)) if out else default_output("demo")  # never into the current folder unasked
    data_dir = out / "data"
    console.print(f"[bold]lablens demo[/bold]: {n} synthetic '{task}' images → {out}")
    # render at the task's own scale (up to 128 px) so thin structures survive, train at image_size
    size = max(image_size, min(PHANTOMS.value(task).default_size, 128))
    with make_progress(progress) as prog:
        write_phantoms(task, data_dir, n=n, seed=seed, size=size, progress=prog)
    cfg = demo_config(image_size, epochs, model, weights)
    cfg.train.seed = seed
    cfg.split.seed = seed
    result = train(data_dir, out / "run", cfg, progress=progress)
    examples = sorted(p for p in data_dir.rglob("*.png"))[:: max(1, n // 10)]
    predict(result.bundles[0], examples, out / "predictions.csv", top_k=3, progress=progress)
    acc = result.metrics["overall"]["accuracy"]
    ci = acc.get("ci") or [None, None]
    ci_text = f" (95 % CI {ci[0]:.3f}–{ci[1]:.3f})" if ci[0] is not None else ""
    console.print(
        f"\n[bold green]done[/bold green] in {result.seconds:.0f} s: test accuracy {acc['value']:.3f}{ci_text}\n"
        f"  report:      {result.run_dir / 'report.html'}\n"
        f"  bundle:      {result.bundles[0]}\n"
        f"  predictions: {out / 'predictions.csv'}"
    )
    return result
