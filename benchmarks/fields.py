"""Field analysis on real and phantom fields: detection scores, ANA slide agreement, phantom differentials.

Command:
    python benchmarks/fields.py [--sections bccd,ana,phantom] [--phantom-n 125] [--phantom-train-n 60]
        [--phantom-bundle RUN/bundle] [--montage docs/fields/ana_nuclei.jpg]
        [--out benchmarks/results/fields.json]

* ``bccd``: the ``smear`` detector on the BCCD *test* list (72 fields; detector defaults were set on
  train/val), precision/recall/F1 at IoU 0.5 for WBC, RBC and platelets, seconds per field; then WBC with a
  verifier fitted on the train+val lists (``lablens fit-verifier``).
* ``ana``: the ``nuclei`` detector on all 31 ana-fields (scale bar left out), nuclei per field, a montage of
  overlays, and slide-level pattern agreement by leave-one-slide-out (``X-n`` and ``X-n-t`` are one slide):
  every detected cell cropped at 24 µm, described by handcrafted features (and EfficientNet-Lite0 ImageNet
  features), a logistic regression trained on the cells of the other slides with their slide's label, and the
  held-out slide called by the mean cell probability.
* ``phantom``: ``blood-cells`` phantom fields (seed 7): WBC detection by the rules and with a verifier fitted on
  other phantom fields (seed 11) and, with ``--phantom-bundle`` (a single-cell
  bundle trained on blood-cells phantoms), the per-patient differential from ``lablens analyze`` against the
  truth counts of the same fields.
Writes JSON after every section.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from lablens.evaluate.detection import score_image
from lablens.fields.annotations import BCCD_NAMES, read_phantom_cells, read_voc
from lablens.fields.crops import crop_cells, draw_overlay
from lablens.fields.detection import create_detector
from lablens.fields.verifier import TrainingField
from lablens.fields.verifier_fit import fit_wbc_verifier
from lablens.workflows.fit_verifier import score_wbc

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
ANA_BAR = (0, 0, 420, 80)


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _bccd_fields(root: Path, lists: list[str]) -> list[TrainingField]:
    out = []
    for name in lists:
        for stem in (root / "ImageSets" / "Main" / f"{name}.txt").read_text().split():
            boxes = [
                b for lab, b in read_voc(root / "Annotations" / f"{stem}.xml", BCCD_NAMES) if lab == "wbc"
            ]
            out.append(TrainingField(_rgb(root / "JPEGImages" / f"{stem}.jpg"), 0.075, boxes, stem))
    return out


def _verifier_scores(train: list[TrainingField], test: list[TrainingField], tmp: Path) -> dict:
    t0 = time.perf_counter()
    verifier = fit_wbc_verifier(train)
    fit_s = time.perf_counter() - t0
    path = verifier.save(tmp / "verifier.json")
    t0 = time.perf_counter()
    scores = score_wbc(test, {"verifier": str(path)})
    return {
        **scores,
        "fit_seconds": round(fit_s, 1),
        "seconds_per_field": round((time.perf_counter() - t0) / len(test), 3),
        "trained_on": verifier.info,
    }


def bench_bccd(root: Path) -> dict:
    det = create_detector("smear", um_per_px=0.075)
    totals: dict = {}
    stems = (root / "ImageSets" / "Main" / "test.txt").read_text().split()
    t0 = time.perf_counter()
    for stem in stems:
        found = det.detect(_rgb(root / "JPEGImages" / f"{stem}.jpg"))
        truth = read_voc(root / "Annotations" / f"{stem}.xml", BCCD_NAMES)
        score_image(
            [(d.label, d.box, d.score) for d in found], truth, ["wbc", "rbc", "platelet"], totals=totals
        )
    seconds = (time.perf_counter() - t0) / len(stems)
    tmp = Path(tempfile.mkdtemp(prefix="lablens-bccd-"))
    verifier = _verifier_scores(_bccd_fields(root, ["train", "val"]), _bccd_fields(root, ["test"]), tmp)
    return {
        "fields": len(stems),
        "seconds_per_field": round(seconds, 3),
        "iou": 0.5,
        **{k: v.as_dict() for k, v in totals.items()},
        "wbc_with_verifier": verifier,
    }


def _slide(name: str) -> str:
    return name.removesuffix("-t")


def bench_ana(root: Path, montage: Path | None) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from lablens.features.feature_set import FeatureSet

    labels = pd.read_csv(root / "labels.csv")
    det = create_detector("nuclei", um_per_px=0.093, ignore_regions=[ANA_BAR])
    crops, cell_field, counts, tiles = [], [], {}, []
    for row in labels.itertuples():
        img = _rgb(root / row.path)
        found = det.detect(img)
        counts[row.path] = {"nuclei": len(found), "mitotic": sum(d.attrs["mitotic"] for d in found)}
        crops.append(crop_cells(img, found, 24 / 0.093, 64))
        cell_field += [row.path] * len(found)
        if montage is not None and Path(row.path).stem in (
            "HOM-1",
            "ACA-2",
            "NUC-1",
            "AMA-1",
            "FIB-1",
            "NEG-1",
        ):
            view = np.clip(img.astype(float) * 255 / max(np.percentile(img[..., 1], 99.8), 1), 0, 255).astype(
                np.uint8
            )
            tile = cv2.resize(draw_overlay(view, found), (288, 215), interpolation=cv2.INTER_AREA)
            cv2.putText(
                tile,
                f"{Path(row.path).stem}: {len(found)}",
                (250, 312),
                0,
                0.6,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
            tiles.append(tile)
    if montage is not None and tiles:
        montage.parent.mkdir(parents=True, exist_ok=True)
        sheet = np.vstack([np.hstack(tiles[i : i + 3]) for i in range(0, len(tiles), 3)])
        cv2.imwrite(str(montage), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    X_img = np.concatenate(crops)
    field_of = np.array(cell_field)
    slide_label = {_slide(Path(p).stem): lab for p, lab in zip(labels.path, labels.slide_label, strict=True)}
    cell_slide = np.array([_slide(Path(p).stem) for p in field_of])
    y = np.array([slide_label[s] for s in cell_slide])
    out: dict = {
        "fields": len(labels),
        "slides": len(slide_label),
        "cells": len(y),
        "per_field": counts,
        "methods": {},
    }
    for spec in ("haralick+lbp+colour+morphology", "deep[efficientnet_lite0]"):
        t0 = time.perf_counter()
        X = FeatureSet(spec, cache=False).transform(X_img)
        calls, field_calls = {}, {}
        for s in sorted(slide_label):
            test = cell_slide == s
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
            clf.fit(X[~test], y[~test])
            p = clf.predict_proba(X[test])
            calls[s] = str(clf.classes_[p.mean(axis=0).argmax()])
            for f in np.unique(field_of[test]):
                pf = p[field_of[test] == f]
                field_calls[f] = str(clf.classes_[pf.mean(axis=0).argmax()])
        slide_ok = [calls[s] == slide_label[s] for s in calls]
        field_ok = [field_calls[f] == slide_label[_slide(Path(f).stem)] for f in field_calls]
        out["methods"][spec] = {
            "slide_agreement": round(float(np.mean(slide_ok)), 4),
            "slides_correct": int(sum(slide_ok)),
            "field_agreement": round(float(np.mean(field_ok)), 4),
            "fields_correct": int(sum(field_ok)),
            "calls": calls,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    return out


def _phantom_fields(
    root: Path, n: int, seed: int, groups: int | None = None
) -> tuple[pd.DataFrame, list[TrainingField]]:
    from lablens.phantoms import get_task
    from lablens.phantoms.blood_smear import WBC_CLASSES
    from lablens.phantoms.write import write_phantoms

    man = write_phantoms(get_task("blood-cells"), root, n=n, seed=seed, groups=groups, fields=True)
    truth = read_phantom_cells(root / "cells.csv", {c: "wbc" for c in WBC_CLASSES})
    fields = []
    for row in man.itertuples():
        img = _rgb(root / row.path)
        boxes = [b for lab, b in truth.get(row.path, []) if lab == "wbc"]
        fields.append(TrainingField(img, row.field_um / img.shape[1], boxes, row.path))
    return man, fields


def bench_phantom(n: int, n_train: int, bundle: str | None) -> dict:
    from lablens.phantoms.blood_smear import WBC_CLASSES
    from lablens.workflows.analyze import analyze

    tmp = Path(tempfile.mkdtemp(prefix="lablens-fields-"))
    # one patient per 25 fields: ~100 white cells each, the size of a manual differential
    man, test = _phantom_fields(tmp / "fields", n, seed=7, groups=max(1, n // 25))
    _, train = _phantom_fields(tmp / "train", n_train, seed=11)
    out: dict = {
        "fields": n,
        "train_fields": n_train,
        "wbc_rules": score_wbc(test),
        "wbc_with_verifier": _verifier_scores(train, test, tmp),
    }
    if bundle:
        csv = tmp / "fields.csv"
        pd.DataFrame(
            {"path": "fields/" + man["path"], "sample": man["group"], "um_per_px": man["field_um"] / 512}
        ).to_csv(csv, index=False)
        res = analyze(
            bundle,
            [csv],
            tmp / "analysis",
            task="blood",
            min_cells=1,
            verifier=tmp / "verifier.json",
            progress=False,
        )
        cells = pd.read_csv(tmp / "fields" / "cells.csv")
        cells = cells[cells["label"].isin(WBC_CLASSES)].merge(man[["path", "group"]], on="path")
        errors = {}
        for g, df in cells.groupby("group"):
            true_pct = df["label"].value_counts(normalize=True) * 100
            doc = res.samples[g]
            errors[g] = {
                c: round(abs(doc["percent"].get(c, 0.0) - float(true_pct.get(c, 0.0))), 2)
                for c in WBC_CLASSES
            }
            errors[g]["n_true"] = len(df)
            errors[g]["n_identified"] = doc["n_identified"]
        worst = max(v for e in errors.values() for k, v in e.items() if k in WBC_CLASSES)
        out["differential_abs_error_points"] = errors
        out["max_abs_error_points"] = worst
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sections", default="bccd,ana,phantom")
    ap.add_argument("--phantom-n", type=int, default=125)
    ap.add_argument("--phantom-train-n", type=int, default=60)
    ap.add_argument("--phantom-bundle", default=None)
    ap.add_argument("--montage", type=Path, default=Path("docs/fields/ana_nuclei.jpg"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/fields.json"))
    args = ap.parse_args()
    doc: dict = {"machine": platform.platform(), "cpu_count": __import__("os").cpu_count()}
    for section in args.sections.split(","):
        t0 = time.perf_counter()
        if section == "bccd":
            doc["bccd"] = bench_bccd(SHARED / "bccd")
        elif section == "ana":
            doc["ana"] = bench_ana(SHARED / "ana-fields", args.montage)
        elif section == "phantom":
            doc["phantom"] = bench_phantom(args.phantom_n, args.phantom_train_n, args.phantom_bundle)
        doc[section]["wall_s"] = round(time.perf_counter() - t0, 1)
        print(
            section,
            json.dumps(
                {
                    k: v
                    for k, v in doc[section].items()
                    if k not in ("per_field", "differential_abs_error_points")
                },
                default=str,
            ),
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1, default=str))


if __name__ == "__main__":
    main()
