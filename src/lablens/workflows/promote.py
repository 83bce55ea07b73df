"""``lablens promote CANDIDATE --against CURRENT --data LOCKED… --out DIR``: prove a new model before it serves.

Both bundles classify the same locked, labelled cases (images either model was trained or validated on are left
out, so passing the original dataset scores its test partition); :func:`lablens.evaluate.paired.paired_comparison`
gives per-class sensitivity differences with group-bootstrap CIs, McNemar's tests and the rule's decision.
Writes ``promotion.json`` and ``report.html`` into the new folder ``out``; a refusal is an error naming every
class that fails the rule, after the report is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lablens.config import DataConfig, RunConfig, dump_config
from lablens.errors import RunError
from lablens.evaluate.paired import PromotionRule, paired_comparison
from lablens.infer.bundle import Bundle, load_bundle
from lablens.infer.predictor import Predictor
from lablens.jsonio import write_json
from lablens.progress import console, make_progress
from lablens.report.html import template_environment
from lablens.workflows.printing import warn
from lablens.workflows.reading import drop_seen, read_data, read_pixels, seen_prefixes
from lablens.workflows.run_folder import check_new_folder, run_folder


def _calls(bundle: Bundle, manifest: Any, data_cfg: DataConfig, prog: Any, device: str) -> np.ndarray:
    """The bundle's class names for the manifest's images (its own preprocessing)."""
    cfg = data_cfg.model_copy(update={"resize_mode": bundle.resize_mode})
    pixels = read_pixels(manifest, bundle.image_size, cfg, prog)
    proba = Predictor.prepared(bundle, warn, device=device).predict_arrays(pixels)
    return np.asarray(bundle.classes)[proba.argmax(axis=1)]


def promote(
    candidate: str | Path,
    current: str | Path,
    data: list[str | Path],
    out: str | Path,
    *,
    rule: PromotionRule | None = None,
    data_cfg: DataConfig | None = None,
    include_seen: bool = False,
    n_boot: int = 2000,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Compare ``candidate`` with ``current`` on the locked ``data``; return the document (``decision`` inside)."""
    check_new_folder(Path(out))
    rule = rule or PromotionRule()
    data_cfg = data_cfg or DataConfig()
    cand, cur = load_bundle(candidate), load_bundle(current)
    if set(cand.classes) != set(cur.classes):
        raise RunError(
            f"{candidate} and {current} call different classes (only in the candidate: "
            f"{sorted(set(cand.classes) - set(cur.classes))}; only in service: "
            f"{sorted(set(cur.classes) - set(cand.classes))}); they cannot be compared class by class"
        )
    classes = cur.classes
    seen = seen_prefixes(cand) | seen_prefixes(cur)
    y, calls_cand, calls_cur, groups, sources = [], [], [], [], []
    with run_folder(out) as out, make_progress(progress) as prog:
        for i, source in enumerate(data):
            manifest, report = read_data(source, data_cfg, prog, known_classes=classes)
            manifest = drop_seen(manifest, report, seen, source, include_seen)
            y.append(np.asarray(manifest.classes)[manifest.y])
            groups.append(np.asarray([f"{i}:{g}" for g in manifest.groups]))
            calls_cand.append(_calls(cand, manifest, data_cfg, prog, device))
            calls_cur.append(_calls(cur, manifest, data_cfg, prog, device))
            sources.append({"data": str(source), "images": len(manifest), "skipped": report.n_skipped})
        index = {c: j for j, c in enumerate(classes)}
        to_index = np.vectorize(index.__getitem__, otypes=[np.int64])
        doc = paired_comparison(
            to_index(np.concatenate(y)),
            to_index(np.concatenate(calls_cand)),
            to_index(np.concatenate(calls_cur)),
            classes,
            groups=np.concatenate(groups),
            n_boot=n_boot,
            rule=rule,
        )
        doc.update(
            schema="lablens.promotion/1",
            candidate={"bundle": str(candidate), "hash": cand.hash},
            current={"bundle": str(current), "hash": cur.hash},
            sources=sources,
        )
        write_json(out / "promotion.json", doc)  # the rule and its figures
        dump_config(RunConfig(data=data_cfg), out / "config.yaml")  # how the cases were read (`--config`)
        html = template_environment().get_template("promote.html.j2").render(doc=doc, classes=classes)
        (out / "report.html").write_text(html, encoding="utf-8")
    acc = doc["accuracy"]
    verdict = "PROMOTE" if doc["decision"]["promote"] else "REFUSED"
    if progress:
        console.print(
            f"{verdict}: accuracy {acc['candidate']:.3f} (candidate {cand.short_hash}) vs {acc['current']:.3f} "
            f"(in service {cur.short_hash}) on {doc['n']} locked images → {out}",
            highlight=False,
        )
    if not doc["decision"]["promote"]:
        raise RunError("promotion refused: " + "; ".join(doc["decision"]["reasons"]) + f" (report: {out})")
    return doc
