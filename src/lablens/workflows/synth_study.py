"""``lablens synth-study``: does adding synthetic images of a rare class help, against the usual remedies?

One grouped split of the real images; generators (GAN, diffusion) learn from its training partition only; then
the same classifier is trained, with several seeds, in every arm:

- ``real``: the training partition as it is (no class weighting);
- ``weighted``, ``sampler``, ``focal``: the non-generative remedies for imbalance — the best of them on the
  **validation** partition (rare-class F1, then macro F1, mean over seeds) is the study's ``best remedy``;
- ``<method>×<ratio>``: the training partition plus ``ratio`` × (real training images of each rare class)
  synthetic images of that class (no class weighting), for each generator and ratio.

Validation (epoch selection) and test images are real, the same in every arm. On the test partition: the rare
class's sensitivity, PPV and F1, macro F1 and accuracy, each the mean over seeds with a 95 % group-bootstrap
interval (test patients resampled, seeds averaged per replicate); McNemar of every arm against ``real`` and
against the best remedy on each image's majority vote over seeds (Holm-adjusted). ``--keep N`` cuts each rare
class to N training images (whole groups first, drawn from the split seed) to study rarity on data that is
not rare; the cut images are used nowhere.

Run folder::

    OUT/synth_study.json   every figure (arms × metrics with CIs and per-seed values, tests, KID, memorisation)
    OUT/synth_study.csv    one row per arm
    OUT/rare_class.png     rare-class sensitivity and F1 per arm with CIs
    OUT/report.html        table, plot, generator quality, montages
    OUT/split.json         the split; OUT/synthetic/<method>/ each generator's synthetic set (usable with
                           ``lablens train --synthetic``), its bundle and quality report
"""

from __future__ import annotations

import base64
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lablens import __version__
from lablens.config import RunConfig
from lablens.data.manifest import Manifest
from lablens.data.splits import save_split
from lablens.errors import RunError, SettingError
from lablens.evaluate.seeded import majority_vote, paired_tests, seeded_scores
from lablens.jsonio import write_json
from lablens.models.from_config import estimator_params
from lablens.models.registry import create_estimator
from lablens.params import ParamError
from lablens.progress import console, make_progress
from lablens.synth.features import classifier_features
from lablens.synth.registry import create_generator, list_generators
from lablens.synth.report import montage, png_b64
from lablens.train.context import FitContext
from lablens.train.order import mix_seed
from lablens.workflows.printing import print_data_report
from lablens.workflows.reading import check_classes, read_data, read_pixels, split_from_config
from lablens.workflows.run_folder import run_folder
from lablens.workflows.synthesize import (
    MIN_IMAGES,
    check_training_counts,
    save_generator,
    write_images,
    write_quality,
)

REMEDIES = ("weighted", "sampler", "focal")
#: salt of the draw that picks which synthetic images join an arm, and of the --keep cut
PICK_SALT, KEEP_SALT = 4391, 4397


@dataclass
class SynthStudyResult:
    out: Path
    doc: dict[str, Any]


@dataclass(frozen=True)
class Arm:
    """One way of training: a class-imbalance setting, and synthetic images of a generator at a ratio."""

    name: str
    imbalance: str
    method: str | None = None
    ratio: float | None = None


def study_arms(methods: list[str], ratios: list[float]) -> list[Arm]:
    arms = [Arm("real", "none"), *(Arm(r, r) for r in REMEDIES)]
    return arms + [Arm(f"{m}×{r:g}", "none", m, r) for m in methods for r in ratios]


def keep_rows(
    rows: np.ndarray, labels: np.ndarray, groups: np.ndarray, classes: list[str], keep: int, seed: int
) -> np.ndarray:
    """``rows`` with each class of ``classes`` cut to ``keep`` images: whole groups in a seeded order, the last
    one partly."""
    rng = np.random.default_rng([seed, KEEP_SALT])
    out = [rows[~np.isin(labels[rows], classes)]]
    for c in classes:
        mine = rows[labels[rows] == c]
        names = np.unique(groups[mine])
        rank = dict(zip(rng.permutation(names), range(len(names)), strict=True))
        order = sorted(mine, key=lambda r: (rank[groups[r]], r))
        out.append(np.asarray(order[:keep], dtype=np.int64))
    return np.sort(np.concatenate(out))


def synthetic_rows(
    counts: dict[str, int], available: dict[str, int], ratio: float, seed: int
) -> dict[str, np.ndarray]:
    """Which synthetic images (indices per class) join an arm: ``ratio`` × the real count, a seeded draw
    that nests (a smaller ratio takes a prefix of a larger one's images)."""
    picked = {}
    for k, (c, n_real) in enumerate(sorted(counts.items())):
        order = np.random.default_rng([seed, PICK_SALT, k]).permutation(available[c])
        picked[c] = np.sort(order[: min(available[c], round(ratio * n_real))])
    return picked


#: what the study trains by default: EfficientNet-Lite0 (ImageNet weights) at 64 px, 10 epochs, a 6:2:2 split
STUDY_DEFAULTS = {
    "model.name": "efficientnet_lite0",
    "model.weights": "imagenet",
    "model.image_size": 64,
    "model.tta": False,
    "train.epochs": 10,
    "split.protocol": "6:2:2",
}


def parse_list(text: str) -> list[str]:
    """``"gbi, hyp"`` → ``["gbi", "hyp"]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_ratios(text: str) -> list[float]:
    """``--ratios 1,2`` as numbers; a SettingError naming the option otherwise."""
    try:
        return [float(r) for r in parse_list(text)]
    except ValueError:
        raise SettingError(f"--ratios {text!r}: give numbers, e.g. 1,2") from None


def synth_study(
    data: str | Path,
    out: str | Path,
    cfg: RunConfig,
    *,
    classes: list[str],
    methods: list[str] | None = None,
    ratios: list[float] | None = None,
    seeds: int = 3,
    keep: int | None = None,
    image_size: int = 32,
    generator_epochs: dict[str, int] | None = None,
    progress: bool = True,
) -> SynthStudyResult:
    """Run the study described in the module docstring; write its run folder."""
    t_start = time.perf_counter()
    methods = list(methods if methods is not None else ["gan", "diffusion"])
    ratios = [float(r) for r in (ratios if ratios is not None else [1.0, 2.0])]
    generator_epochs = {m: e for m, e in (generator_epochs or {}).items() if e is not None}
    _check_request(classes, methods, ratios, seeds, keep, generator_epochs)
    cfg = cfg.model_copy(deep=True)
    cfg.data.path = str(Path(data).resolve())
    params = _classifier_params(cfg)
    arms = study_arms(methods, ratios)
    with run_folder(out, cfg) as out, make_progress(progress) as prog:
        manifest, report = read_data(data, cfg.data, prog)
        if progress:
            print_data_report(report)
        check_classes(classes, manifest, data)
        labels, groups = manifest.table["label"].to_numpy(), np.asarray(manifest.groups).astype(str)
        train, val, test = _study_rows(cfg, manifest, labels, groups, classes, keep, out / "split.json")
        counts = {c: int((labels[train] == c).sum()) for c in classes}
        check_training_counts(counts)
        pixels = read_pixels(manifest, image_size, cfg.data, prog)
        context = FitContext(
            progress=prog,
            device=cfg.train.device,
            threads=cfg.train.threads,
            eval_batch_size=cfg.eval.batch_size,
        )
        synthetic, generated = {}, {}
        for method in methods:
            synthetic[method], generated[method] = _generate(
                out / "synthetic" / method, method, generator_epochs.get(method), image_size, cfg, data,
                manifest, train, classes, math.ceil(max(ratios) * max(counts.values())), pixels, context,
            )  # fmt: skip
        timings = {f"generator_{m}": g["seconds"] for m, g in generated.items()}
        predictions, first_real, fit_times = _train_arms(
            arms, seeds, cfg, params, manifest, pixels, train, val, test, counts, synthetic, context
        )
        timings.update(fit_times)
        real_by_class = {c: pixels[train][labels[train] == c] for c in classes}
        quality = _check_synthetic(
            out, generated, real_by_class, synthetic, first_real, data, image_size, cfg.train.seed, prog
        )
        for method, figures in quality.items():
            generated[method]["quality"] = figures
    doc = _document(cfg, manifest, arms, predictions, classes, labels, groups, val, test, train, counts, keep,
                    generated, seeds, image_size, timings, t_start)  # fmt: skip
    _write_outputs(out, doc, real_by_class, synthetic, classes, methods, progress)
    return SynthStudyResult(out, doc)


def _classifier_params(cfg: RunConfig) -> dict[str, Any]:
    """The classifier's parameters from ``cfg``, checked with every arm's ``imbalance`` before hours of
    training; a bad one is a one-line :class:`RunError`."""
    try:
        params = estimator_params(cfg)
        for imbalance in ("none", *REMEDIES):
            create_estimator(cfg.model.name, **{**params, "imbalance": imbalance})
    except ParamError as exc:
        raise RunError(
            f"{exc} (every arm trains model {cfg.model.name!r} with its own train.imbalance)"
        ) from None
    return params


def _study_rows(
    cfg: RunConfig, manifest: Manifest, labels: np.ndarray, groups: np.ndarray, classes: list[str],
    keep: int | None, path: Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Make the split of ``cfg.split`` (one train:validation:test split, or a :class:`RunError`) and save
    it as ``path``; return its training rows (each rare class cut to ``keep`` images when given), validation
    rows and test rows."""
    split = split_from_config(cfg, manifest)
    fold = split.folds[0]
    if len(split.folds) != 1 or len(fold.val) == 0 or len(fold.test) == 0:
        raise RunError(
            f"split {cfg.split.protocol!r}: the study needs one train:validation:test split, e.g. 6:2:2"
        )
    save_split(split, manifest.ids, groups, path)
    train = (
        keep_rows(np.asarray(fold.train), labels, groups, classes, keep, cfg.split.seed)
        if keep
        else np.asarray(fold.train)
    )
    return train, np.asarray(fold.val), np.asarray(fold.test)


def _check_synthetic(
    out: Path, generated: dict[str, dict[str, Any]], real: dict[str, np.ndarray],
    synthetic: dict[str, dict[str, np.ndarray]], classifier: Any, data: str | Path, image_size: int,
    seed: int, progress: Any,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Compare each generator's synthetic images with the ``real`` training images of their class on the
    features of ``classifier`` (arm ``real``, first seed); write its quality report into
    ``out/synthetic/<method>/``; return the per-class figures by method."""
    progress.log("scoring and checking the synthetic images")
    features = {"classifier (arm real, first seed)": classifier_features(classifier)}
    quality = {}
    for method, images in synthetic.items():
        info = {"method": method, "generator": generated[method]["generator"], "data": str(data),
                "image_size": image_size}  # fmt: skip
        title = f"{method} generator · {data} · {image_size} px"
        doc = write_quality(out / "synthetic" / method, real, images, features, seed, info, title)
        quality[method] = doc["classes"]
    return quality


def _montages(
    real: dict[str, np.ndarray],
    synthetic: dict[str, dict[str, np.ndarray]],
    classes: list[str],
    methods: list[str],
) -> dict[str, str]:
    """Per generator, a montage (base64 PNG) of up to 10 real images of each class, then 10 synthetic ones."""
    return {
        m: png_b64(montage([real[c][:10] for c in classes] + [synthetic[m][c][:10] for c in classes]))
        for m in methods
    }


def _write_outputs(
    out: Path, doc: dict[str, Any], real: dict[str, np.ndarray], synthetic: dict[str, dict[str, np.ndarray]],
    classes: list[str], methods: list[str], progress: bool,
) -> None:  # fmt: skip
    """Write the document, its table, plot and report (with montages of ``real`` and ``synthetic`` images)
    into ``out``; print the table unless quiet."""
    write_json(out / "synth_study.json", doc)
    pd.DataFrame(_rows(doc)).to_csv(out / "synth_study.csv", index=False)
    png = rare_class_png(doc)
    (out / "rare_class.png").write_bytes(png)
    montages = _montages(real, synthetic, classes, methods)
    (out / "report.html").write_text(_render(doc, png, montages), encoding="utf-8")
    if progress:
        print_study_table(doc)
        console.print(f"report: {out / 'report.html'}")


def _generate(
    folder: Path, method: str, epochs: int | None, image_size: int, cfg: RunConfig, data: str | Path,
    manifest: Any, train: np.ndarray, classes: list[str], n: int, pixels: np.ndarray, context: FitContext,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:  # fmt: skip
    """Train one generator on the training rows; write its synthetic set (``n`` images per rare class) to
    ``folder``; return the images by class and what the document records of it."""
    context.progress.log(f"training the {method} generator on {len(train)} training images")
    t0 = time.perf_counter()
    labels = manifest.table["label"].to_numpy()
    groups = np.asarray(manifest.groups).astype(str)
    gen = create_generator(
        method, image_size=image_size, seed=cfg.train.seed, **({"epochs": epochs} if epochs else {})
    )
    gen.fit(pixels[train], labels[train], groups=groups[train], context=context)
    folder.mkdir(parents=True)
    training = {"data": str(data), "n_images": len(train)}
    digest = save_generator(folder, gen, manifest.table["sha256"].iloc[train], training)
    images = write_images(folder, gen, classes, n, cfg.train.seed, digest)
    return images, {
        "generator": digest,
        "epochs_trained": len(gen.history_),
        "best_epoch": gen.best_epoch_,
        "images_per_class": n,
        "seconds": time.perf_counter() - t0,
    }


def _train_arms(
    arms: list[Arm], seeds: int, cfg: RunConfig, params: dict[str, Any], manifest: Any, pixels: np.ndarray,
    train: np.ndarray, val: np.ndarray, test: np.ndarray, counts: dict[str, int],
    synthetic: dict[str, dict[str, np.ndarray]], context: FitContext,
) -> tuple[dict[str, dict[str, list[np.ndarray]]], Any, dict[str, float]]:  # fmt: skip
    """Train every arm with every seed; return predicted class codes (``manifest.y`` numbering) on the
    validation and test rows per arm and seed, the first seed's real-only classifier, and the fit times."""
    labels = manifest.table["label"].to_numpy()
    code = pd.Series(np.arange(len(manifest.classes)), index=manifest.classes)
    predictions: dict[str, dict[str, list[np.ndarray]]] = {a.name: {"val": [], "test": []} for a in arms}
    first_real = None
    timings: dict[str, float] = {}
    for k in range(seeds):
        seed = cfg.train.seed + k
        for arm in arms:
            x, y = pixels[train], labels[train]
            if arm.method is not None:
                images = synthetic[arm.method]
                picked = synthetic_rows(
                    counts, {c: len(v) for c, v in images.items()}, arm.ratio, mix_seed(seed, k)
                )
                x = np.concatenate([x, *(images[c][rows] for c, rows in picked.items())])
                y = np.concatenate([y, *([c] * len(rows) for c, rows in picked.items())])
            context.progress.log(f"seed {seed}: training arm {arm.name} on {len(y)} images")
            t0 = time.perf_counter()
            est = create_estimator(cfg.model.name, **{**params, "seed": seed, "imbalance": arm.imbalance})
            est.fit(x, y, pixels[val], labels[val], context=context)
            timings[f"fit_{arm.name}_seed{seed}"] = time.perf_counter() - t0
            for part, rows in (("val", val), ("test", test)):
                proba = est.predict_proba(pixels[rows], device=cfg.train.device)
                predictions[arm.name][part].append(code.loc[est.classes_[proba.argmax(1)]].to_numpy())
            if first_real is None and arm.name == "real":
                first_real = est
    return predictions, first_real, timings


def _check_request(
    classes: list[str],
    methods: list[str],
    ratios: list[float],
    seeds: int,
    keep: int | None,
    epochs: dict[str, int],
) -> None:
    if not classes:
        raise RunError("--classes: name at least one rare class")
    for m in [*methods, *epochs]:
        if m not in list_generators():
            raise RunError(f"--methods: {m!r} is not a generator ({' | '.join(list_generators())})")
    if not methods or not ratios or any(r <= 0 for r in ratios):
        raise RunError("--methods and --ratios: at least one generator and one ratio above 0")
    if seeds < 1:
        raise RunError("--seeds must be at least 1")
    if keep is not None and keep < MIN_IMAGES:
        raise RunError(f"--keep {keep}: a generator needs at least {MIN_IMAGES} images of each rare class")


def _document(
    cfg: RunConfig, manifest: Any, arms: list[Arm], predictions: dict, classes: list[str], labels: np.ndarray,
    groups: np.ndarray, val: np.ndarray, test: np.ndarray, train: np.ndarray, counts: dict[str, int],
    keep: int | None, generated: dict, seeds: int, image_size: int, timings: dict, t_start: float,
) -> dict[str, Any]:  # fmt: skip
    n_classes = len(manifest.classes)
    y_val, y_test = manifest.y[val], manifest.y[test]
    per_class: dict[str, Any] = {}
    for c in classes:
        rare = manifest.classes.index(c)
        scores = {
            a.name: seeded_scores(y_test, predictions[a.name]["test"], rare, n_classes, groups=groups[test],
                                  n_boot=cfg.eval.bootstrap, level=cfg.eval.level, seed=cfg.split.seed)
            for a in arms
        }  # fmt: skip
        on_val = {r: seeded_scores(y_val, predictions[r]["val"], rare, n_classes, n_boot=0) for r in REMEDIES}
        best = max(
            REMEDIES, key=lambda r: (on_val[r]["f1"]["value"] or 0.0, on_val[r]["macro_f1"]["value"] or 0.0)
        )
        votes = {a.name: majority_vote(predictions[a.name]["test"], n_classes) for a in arms}
        per_class[c] = {
            "scores": scores,
            "best_remedy": best,
            "validation": {r: {m: on_val[r][m]["value"] for m in ("f1", "macro_f1")} for r in REMEDIES},
            "tests_vs_real": paired_tests(y_test, votes, "real", rare),
            "tests_vs_best_remedy": paired_tests(y_test, votes, best, rare),
        }
    return {
        "schema": "lablens.synth_study/1",
        "data": cfg.data.path,
        "classes": manifest.classes,
        "rare_classes": classes,
        "arms": [
            {"name": a.name, "imbalance": a.imbalance, "method": a.method, "ratio": a.ratio} for a in arms
        ],
        "seeds": [cfg.train.seed + k for k in range(seeds)],
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        "rare_train": counts,
        "rare_val": {c: int((labels[val] == c).sum()) for c in classes},
        "rare_test": {c: int((labels[test] == c).sum()) for c in classes},
        "keep": keep,
        "image_size": image_size,
        "model": {
            "name": cfg.model.name,
            "weights": cfg.model.weights,
            "image_size": cfg.model.image_size,
            "epochs": cfg.train.epochs,
            "tta": cfg.model.tta,
        },
        "generators": generated,
        "results": per_class,
        "timings_s": {**timings, "total": time.perf_counter() - t_start},
        "version": __version__,
    }


def _rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for c, res in doc["results"].items():
        for arm, scores in res["scores"].items():
            row: dict[str, Any] = {"class": c, "arm": arm}
            for m, s in scores.items():
                row[m] = s["value"]
                row[f"{m}_lo"], row[f"{m}_hi"] = s["ci"] if s["ci"] else (None, None)
            rows.append(row)
    return rows


def _fmt(s: dict[str, Any]) -> str:
    if s["value"] is None:
        return "–"
    ci = f" ({s['ci'][0]:.2f}–{s['ci'][1]:.2f})" if s["ci"] else ""
    return f"{s['value']:.3f}{ci}"


def print_study_table(doc: dict[str, Any]) -> None:
    from rich.table import Table

    for c, res in doc["results"].items():
        table = Table(
            title=f"{c}: test scores, mean of {len(doc['seeds'])} seeds (95 % CI)", title_justify="left"
        )
        for col in ("arm", "sensitivity", "PPV", "F1", "macro F1"):
            table.add_column(col, justify="left" if col == "arm" else "right")
        for arm, s in res["scores"].items():
            mark = " (best remedy)" if arm == res["best_remedy"] else ""
            table.add_row(
                arm + mark, _fmt(s["sensitivity"]), _fmt(s["ppv"]), _fmt(s["f1"]), _fmt(s["macro_f1"])
            )
        console.print(table)


def rare_class_png(doc: dict[str, Any]) -> bytes:
    from lablens.report.plots import new_figure, style_axes, to_png

    classes = list(doc["results"])
    fig = new_figure(7.2, 1.2 + 2.6 * len(classes))
    for i, c in enumerate(classes):
        res = doc["results"][c]
        arms = list(res["scores"])
        for j, metric in enumerate(("sensitivity", "f1")):
            ax = fig.add_subplot(len(classes), 2, 2 * i + j + 1)
            for k, arm in enumerate(arms):
                s = res["scores"][arm][metric]
                if s["value"] is None:
                    continue
                lo, hi = s["ci"] or (s["value"], s["value"])
                colour = "#0f766e" if arm == "real" else "#b45309" if arm in REMEDIES else "#4f46e5"
                ax.errorbar(
                    s["value"],
                    k,
                    xerr=[[s["value"] - lo], [hi - s["value"]]],
                    fmt="o",
                    color=colour,
                    capsize=3,
                )
            ax.set_yticks(range(len(arms)), arms, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlim(0, 1.02)
            ax.set_xlabel(f"{c} {'sensitivity' if metric == 'sensitivity' else 'F1'} (test)")
            style_axes(ax)
    return to_png(fig)


def _render(doc: dict[str, Any], png: bytes, montages: dict[str, str]) -> str:
    from lablens.report.html import template_environment

    return (
        template_environment()
        .get_template("synth_study.html.j2")
        .render(
            doc=doc,
            png=base64.b64encode(png).decode("ascii"),
            montages=montages,
            fmt=_fmt,
            version=__version__,
        )
    )
