"""``lablens fit-verifier``: learn the white-cell verifier of the ``smear`` detector from annotated fields.

Inputs are the fields (files, folders, or a fields CSV as for ``lablens analyze``) and their truth: a folder of
Pascal VOC XML files named like the images (``BloodImage_00001.xml``), or a phantom ``cells.csv``. Every truth
object whose label is not a red cell or platelet counts as a white cell.

A share of the fields (``holdout``) is set aside first to measure the rules and the verifier on fields it did not
see (precision/recall/F1 at IoU 0.5, stored in the file's ``info`` and printed); the verifier is then refitted
on all fields and written, its settings beside it as ``<out>.yaml`` (loadable with ``--config``). Fields that
cannot be read, or have no truth, are skipped with the reason.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from lablens.data.io import DecodeLimits, ImageError, read_image
from lablens.data.tables import TableError, number, read_text_csv
from lablens.data.validate import Problem
from lablens.errors import RunError
from lablens.evaluate.detection import Counts, score_image
from lablens.fields.annotations import read_voc
from lablens.fields.brightfield import SmearDetector
from lablens.fields.pipeline import FieldInput
from lablens.fields.verifier import TrainingField, WbcVerifier
from lablens.fields.verifier_fit import fit_wbc_verifier
from lablens.progress import console, make_progress
from lablens.verb_config import VerbConfig
from lablens.workflows.analyze import read_fields

NON_WBC = ("rbc", "platelet", "platelets")
MIN_HOLDOUT_FIELDS = 5


@dataclass
class FitVerifierResult:
    path: Path
    verifier: WbcVerifier
    holdout: dict[str, Any] | None
    skipped: list[Problem] = field(default_factory=list)


def _truth_reader(truth: Path, non_wbc: tuple[str, ...]):
    """A function ``field path -> white-cell boxes | None`` (None: no truth for that field)."""
    skip = {n.lower() for n in non_wbc}
    if truth.is_dir():

        def from_voc(path: Path) -> list[tuple[float, ...]] | None:
            xml = truth / f"{path.stem}.xml"
            if not xml.is_file():
                return None
            return [b for lab, b in read_voc(xml) if lab.lower() not in skip]

        return from_voc
    if truth.is_file() and truth.suffix.lower() == ".csv":
        try:
            df = read_text_csv(truth)
        except TableError as exc:
            raise RunError(str(exc)) from None
        need = {"path", "label", "x0", "y0", "x1", "y1"}
        if not need <= set(df.columns):
            raise RunError(f"{truth}: a truth CSV needs columns {', '.join(sorted(need))}")
        boxes: dict[Path, list[tuple[float, ...]]] = {}
        for i, row in enumerate(df.to_dict("records")):
            key = (truth.parent / row["path"]).resolve()
            lst = boxes.setdefault(key, [])
            if row["label"].lower() not in skip:
                try:
                    lst.append(
                        tuple(
                            number(row[k], k, f"{truth}, row {i + 2}") or 0.0
                            for k in ["x0", "y0", "x1", "y1"]
                        )
                    )
                except TableError as exc:
                    raise RunError(str(exc)) from None
        return lambda path: boxes.get(path.resolve())
    raise RunError(f"--truth {truth}: give a folder of Pascal VOC .xml files or a cells CSV")


def score_wbc(
    fields: list[TrainingField], detector_kwargs: dict[str, Any] | None = None
) -> dict[str, float | int]:
    """White-cell precision/recall/F1 at IoU 0.5 of the ``smear`` detector (with ``detector_kwargs``) on ``fields``."""
    totals: dict[str, Counts] = {}
    for f in fields:
        det = SmearDetector(um_per_px=f.um_per_px, find_rbc=False, **(detector_kwargs or {}))
        white = [
            d for d in det.white_cells_and_platelets(np.asarray(f.image, np.float32)) if d.label == "wbc"
        ]
        score_image(
            [(d.label, d.box, d.score) for d in white], [("wbc", b) for b in f.boxes], ["wbc"], totals=totals
        )
    return totals["wbc"].as_dict() if "wbc" in totals else {}


class FitVerifierConfig(VerbConfig):
    """How the verifier is fitted and measured (written as ``<out>.yaml`` beside the verifier file).

    Attributes:
        um_per_px: field scale in µm per pixel of a field the fields CSV gives none.
        holdout: share of fields held out to measure the rules against the verifier first, in ``[0, 1)``.
        seed: seed of the hold-out draw and of LightGBM.
        non_wbc: truth labels that are not white cells (a list, or one comma-separated string).
        detector_kwargs: settings of the ``smear`` detector the verifier is fitted on.
    """

    verb: ClassVar[str] = "fit-verifier"

    um_per_px: float | None = None
    holdout: float = 0.2
    seed: int = 0
    non_wbc: tuple[str, ...] = NON_WBC
    detector_kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("non_wbc", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(n.strip() for n in value.split(",") if n.strip())
        return value


def fit_verifier(
    fields: list[str | Path],
    truth: str | Path,
    out: str | Path,
    cfg: FitVerifierConfig | None = None,
    *,
    progress: bool = True,
    **settings: Any,
) -> FitVerifierResult:
    """Fit, measure on held-out fields, refit on all and write the verifier JSON to the new file ``out`` (its
    settings in ``<out>.yaml``) with ``cfg`` (or its settings as keywords, see :class:`FitVerifierConfig`)."""
    cfg = FitVerifierConfig.resolve(cfg, settings)
    um_per_px, holdout, seed, non_wbc = cfg.um_per_px, cfg.holdout, cfg.seed, cfg.non_wbc
    out = Path(out)
    settings_file = out.with_name(out.name + ".yaml")
    for taken in (out, settings_file):
        if taken.exists():
            raise RunError(f"{taken} exists; choose a new file (nothing is overwritten)")
    if not 0 <= holdout < 1:
        raise RunError("--holdout must be in [0, 1)")
    truth_of = _truth_reader(Path(truth), non_wbc)
    items, unread = read_fields(list(fields), "per-field", None)
    kwargs = dict(cfg.detector_kwargs)
    data, not_read = _training_fields(items, truth_of, truth, um_per_px, progress)
    skipped = unread + not_read
    if not data:
        raise RunError("no annotated field could be read")
    report = _holdout_report(data, holdout, seed, kwargs)
    verifier = _fit(data, kwargs, seed)
    verifier.info["holdout"] = report
    verifier.info["skipped"] = len(skipped)
    verifier.save(out)
    cfg.write(settings_file)
    if progress:
        _print_fitted(out, verifier, len(data), report, skipped)
    return FitVerifierResult(out, verifier, report, skipped)


def _training_fields(
    items: list[FieldInput],
    truth_of: Callable[[Path], list[tuple[float, ...]] | None],
    truth: str | Path,
    um_per_px: float | None,
    progress: bool,
) -> tuple[list[TrainingField], list[Problem]]:
    """Every field read with its white-cell truth, with a progress bar, and the fields skipped (unreadable, or
    without truth); a field without a scale is a :class:`RunError`."""
    data: list[TrainingField] = []
    skipped: list[Problem] = []
    with make_progress(progress) as prog:
        bar = prog.task("read fields", len(items))
        for item in items:
            bar.advance(1)
            scale = item.um_per_px or um_per_px
            if not scale:
                raise RunError(
                    "give the field scale with --um-per-px (or a um_per_px column in a fields CSV)"
                )
            try:
                img = read_image(item.path, DecodeLimits()).pixels
            except ImageError as exc:
                skipped.append(Problem(str(item.path), exc.kind, exc.reason))
                continue
            try:
                boxes = truth_of(item.path)
            except ValueError as exc:  # an unreadable annotation file: named, and the field left out
                skipped.append(Problem(str(item.path), "bad_truth", str(exc)))
                continue
            if boxes is None:
                skipped.append(Problem(str(item.path), "no_truth", f"no annotation for it in {truth}"))
                continue
            data.append(TrainingField(img, float(scale), list(boxes), str(item.path)))
        bar.done()
    return data, skipped


def _holdout_report(
    data: list[TrainingField], holdout: float, seed: int, kwargs: dict[str, Any]
) -> dict[str, Any] | None:
    """The rules and a verifier fitted without them, scored on a seeded ``holdout`` share of the fields;
    ``None`` when either part would have fewer than :data:`MIN_HOLDOUT_FIELDS` fields."""
    n_test = round(holdout * len(data))
    if n_test < MIN_HOLDOUT_FIELDS or len(data) - n_test < MIN_HOLDOUT_FIELDS:
        return None
    order = np.random.default_rng(seed).permutation(len(data))
    test = [data[i] for i in order[:n_test]]
    train = [data[i] for i in order[n_test:]]
    trial = _fit(train, kwargs, seed)
    with tempfile.TemporaryDirectory(prefix="lablens-verifier-") as tmp:
        path = trial.save(Path(tmp) / "holdout.json")
        return {
            "fields": n_test,
            "seed": seed,
            "rules": score_wbc(test, kwargs),
            "verifier": score_wbc(test, {**kwargs, "verifier": str(path)}),
        }


def _fit(fields: list[TrainingField], kwargs: dict[str, Any], seed: int) -> WbcVerifier:
    """:func:`fit_wbc_verifier`, a verifier that cannot be fitted being a :class:`RunError`."""
    try:
        return fit_wbc_verifier(fields, kwargs, seed=seed)
    except ValueError as exc:
        raise RunError(str(exc)) from None


def _print_fitted(
    out: Path, verifier: WbcVerifier, n_fields: int, report: dict[str, Any] | None, skipped: list[Problem]
) -> None:
    """The skipped fields, the held-out scores of the rules and the verifier (when measured), and the fit."""
    for s in skipped:
        console.print(
            f"  [yellow]skipped[/yellow] {s.path}: {s.reason} [dim]({s.kind})[/dim]", highlight=False
        )
    if report:
        for name in ("rules", "verifier"):
            r = report[name]
            console.print(
                f"held-out {report['fields']} fields, {name:8s}: precision {r['precision']:.3f}  "
                f"recall {r['recall']:.3f}  F1 {r['f1']:.3f}",
                highlight=False,
            )
    else:
        console.print(f"too few fields to hold {MIN_HOLDOUT_FIELDS} out for a measurement; fitted on all")
    console.print(
        f"verifier fitted on {n_fields} fields ({verifier.info['positives']} white cells, "
        f"{verifier.info['negatives']} other candidates), {len(skipped)} skipped → {out}",
        highlight=False,
    )
