"""``lablens evaluate``: a bundle on a labelled dataset → metrics.json, predictions.csv, report.html.

Images the model saw in training or validation (recognised by the sha256 prefixes stored in its
card) are left out by default and counted, so an evaluation is never silently optimistic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lablens.config import DataConfig, EvalConfig, RunConfig, dump_config
from lablens.evaluate.calibration import apply_temperature
from lablens.infer.bundle import load_bundle
from lablens.infer.predictor import Predictor
from lablens.jsonio import write_json
from lablens.nn.tta import estimator_policy
from lablens.progress import make_progress
from lablens.workflows.evaluation_output import evaluate_and_write
from lablens.workflows.printing import print_data_report, warn
from lablens.workflows.reading import drop_seen, read_data, read_pixels, seen_prefixes
from lablens.workflows.run_folder import check_new_folder, run_folder


def evaluate(
    bundle: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    data_cfg: DataConfig | None = None,
    eval_cfg: EvalConfig | None = None,
    include_seen: bool = False,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``bundle`` on labelled ``data``; write results into the new folder ``out``.

    Args:
        include_seen: also score images the model was trained or validated on (off by default).
    """
    check_new_folder(Path(out))
    data_cfg = data_cfg or DataConfig()
    eval_cfg = eval_cfg or EvalConfig()
    given = RunConfig(data=data_cfg, eval=eval_cfg)  # written as config.yaml: `lablens evaluate --config` reads it
    b = load_bundle(bundle)
    data_cfg = data_cfg.model_copy(update={"resize_mode": b.resize_mode})
    with run_folder(out) as out, make_progress(progress) as prog:
        manifest, report = read_data(data, data_cfg, prog, known_classes=b.classes)
        manifest = drop_seen(manifest, report, seen_prefixes(b), data, include_seen)
        if progress:
            print_data_report(report)
        write_json(out / "data_report.json", report.to_dict())
        pixels = read_pixels(manifest, b.image_size, data_cfg, prog)
        logits = Predictor.prepared(b, warn, batch_size=eval_cfg.batch_size, device=device).logits(pixels)
        proba = apply_temperature(logits, b.temperature)
        model = b.card.get("model", {})
        info = {
            "bundle": str(b.path),
            "bundle hash": b.short_hash,
            "model": (b.card.get("estimator") or {}).get("name"),
            "architecture": model.get("arch"),
            "image size": f"{b.image_size} px ({b.resize_mode})",
            "data": str(data),
            "images evaluated": len(manifest),
            "skipped": report.n_skipped,
            "temperature": round(b.temperature, 4),
            "test-time augmentation": estimator_policy(b.estimator).describe(),
        }
        metrics = evaluate_and_write(
            out,
            manifest,
            pixels,
            proba,
            eval_cfg=eval_cfg,
            temperature=b.temperature,
            uncalibrated_proba=apply_temperature(logits, 1.0),
            run_info=info,
            title=f"lablens evaluation — {(b.card.get('estimator') or {}).get('name')} on {Path(data).name}",
            subtitle=f"bundle {b.short_hash}; {len(manifest)} images"
            + (f", {report.n_skipped} skipped" if report.n_skipped else ""),
            estimator=b.estimator,
        )
        metrics["bundle_hash"] = b.hash
        write_json(out / "metrics.json", metrics)
        dump_config(given, out / "config.yaml")
    return metrics
