"""Two models on the same locked cases: paired differences, their group-bootstrap CIs, McNemar, a promotion rule.

A candidate model replaces the one in service only when it is proven not worse on the same cases: per class,
the difference in sensitivity (candidate − current) with a percentile CI from resampling whole groups (patients,
slides) — both models are scored on every replicate, so the pairing is kept — and McNemar's test on the images
of that class; overall, the accuracy difference with its CI and McNemar on all images. :class:`PromotionRule`
turns these into a decision with the reasons, each naming the class and the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from lablens.errors import SettingError
from lablens.evaluate.bootstrap import DEFAULT_LEVEL, ci_entry, group_bootstrap
from lablens.evaluate.stats import mcnemar_test


@dataclass(frozen=True)
class PromotionRule:
    """When a candidate may replace the current model.

    ``margin``: the largest drop in any class's sensitivity that is tolerated; ``basis``: ``estimate`` compares
    the point estimate of each difference with ``-margin``, ``ci`` (non-inferiority) its lower CI bound.
    Overall accuracy must not fall (``estimate``: difference ≥ 0; ``ci``: lower bound ≥ ``-margin``).
    """

    margin: float = 0.02
    basis: Literal["estimate", "ci"] = "estimate"

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin < 1.0:
            raise SettingError(f"the promotion margin must be in [0, 1), not {self.margin}")
        if self.basis not in ("estimate", "ci"):
            raise SettingError(f"the promotion basis must be estimate or ci, not {self.basis!r}")


def _sensitivities(weights: np.ndarray, onehot: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Weighted per-class sensitivity, ``(b, K)``; NaN for a class absent from a replicate."""
    den = weights @ onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ (onehot * correct[:, None])) / den


def paired_comparison(
    y: np.ndarray,
    pred_candidate: np.ndarray,
    pred_current: np.ndarray,
    classes: Sequence[str],
    *,
    groups: np.ndarray | Sequence | None = None,
    n_boot: int = 2000,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    rule: PromotionRule | None = None,
) -> dict[str, Any]:
    """Compare two models' class indices on the same images (``y``: true class indices into ``classes``).

    Returns a JSON-ready document: per-model accuracy, the accuracy difference with its CI and McNemar test,
    per class the two sensitivities, their difference with its CI and McNemar on that class's images, and
    the rule's decision (``promote`` and the ``reasons``).
    """
    y = np.asarray(y, dtype=np.int64)
    pa, pb = np.asarray(pred_candidate, dtype=np.int64), np.asarray(pred_current, dtype=np.int64)
    if not (len(y) == len(pa) == len(pb)) or len(y) == 0:
        raise ValueError("the two models must be scored on the same, non-empty set of images")
    a, b = pa == y, pb == y
    rule = rule or PromotionRule()
    k = len(classes)
    onehot = np.eye(k)[y]

    def statistic(w: np.ndarray) -> dict[str, np.ndarray]:
        total = w.sum(axis=1)
        return {
            "accuracy": (w @ a.astype(float) - w @ b.astype(float)) / total,
            "sensitivity": _sensitivities(w, onehot, a.astype(float))
            - _sensitivities(w, onehot, b.astype(float)),
        }

    ones = np.ones((1, len(y)))
    point = statistic(ones)
    intervals = (
        group_bootstrap(statistic, groups, len(y), n_boot=n_boot, level=level, seed=seed) if n_boot else {}
    )
    sens_a = _sensitivities(ones, onehot, a.astype(float))[0]
    sens_b = _sensitivities(ones, onehot, b.astype(float))[0]
    per_class: dict[str, Any] = {}
    for j, name in enumerate(classes):
        mask = y == j
        entry: dict[str, Any] = {"support": int(mask.sum())}
        if mask.any():
            entry.update(
                sensitivity_candidate=float(sens_a[j]),
                sensitivity_current=float(sens_b[j]),
                difference=ci_entry(
                    float(point["sensitivity"][0, j]), intervals.get("sensitivity"), (j,), n_boot
                ),
                mcnemar=mcnemar_test(a[mask], b[mask]).to_dict(),
            )
        per_class[name] = entry
    doc: dict[str, Any] = {
        "n": len(y),
        "level": level,
        "n_boot": n_boot,
        "accuracy": {
            "candidate": float(a.mean()),
            "current": float(b.mean()),
            "difference": ci_entry(float(point["accuracy"][0]), intervals.get("accuracy"), (), n_boot),
        },
        "mcnemar": mcnemar_test(a, b).to_dict(),
        "per_class": per_class,
        "rule": asdict(rule),
    }
    doc["decision"] = decide(doc, rule)
    return doc


def _bound(entry: dict[str, Any], basis: str) -> float | None:
    if basis == "ci":
        return None if entry.get("ci") is None else float(entry["ci"][0])
    return entry.get("value")


def decide(doc: dict[str, Any], rule: PromotionRule) -> dict[str, Any]:
    """``{"promote": bool, "reasons": [...]}`` for a :func:`paired_comparison` document under ``rule``."""
    reasons: list[str] = []
    what = "lower CI bound of the difference" if rule.basis == "ci" else "difference"
    for name, entry in doc["per_class"].items():
        if not entry["support"]:
            continue
        value = _bound(entry["difference"], rule.basis)
        if value is None:
            reasons.append(
                f"{name}: no confidence interval could be computed (too few cases); cannot show it is not worse"
            )
        elif value < -rule.margin:
            reasons.append(
                f"{name}: sensitivity {entry['sensitivity_candidate']:.3f} vs {entry['sensitivity_current']:.3f} "
                f"in service ({what} {value:+.3f} < −{rule.margin:g} allowed; n = {entry['support']})"
            )
    acc = doc["accuracy"]
    overall = _bound(acc["difference"], rule.basis)
    floor = -rule.margin if rule.basis == "ci" else 0.0
    if overall is None or overall < floor:
        shown = "no interval" if overall is None else f"{what} {overall:+.3f} < {floor:+g}"
        reasons.append(
            f"overall accuracy {acc['candidate']:.3f} vs {acc['current']:.3f} in service ({shown})"
        )
    return {"promote": not reasons, "reasons": reasons}
