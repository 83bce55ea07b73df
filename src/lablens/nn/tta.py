"""Test-time augmentation policies: which views of an image a prediction averages.

A deep bundle predicts with one of three policies, recorded by its estimator's ``tta`` and ``tta_margin``:

- ``off``: one view per image;
- ``full``: the mean of the 8 flips/rotations of every image (8× the cost);
- ``adaptive``: one view first, and all 8 only for images whose top-1 minus top-2 softmax probability is below
  the margin (the uncertain ones, where averaging views can change the call).

The torch path lives in :func:`lablens.nn.network.run_network`; this module holds the same rules for
NumPy callers (ONNX Runtime) and the policy's description for cards, reports and the ``--tta`` override.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator

from lablens.errors import SettingError

VIEWS = 8


@dataclass(frozen=True)
class TtaPolicy:
    """``views`` 1 (off) or 8; ``margin`` set for adaptive TTA."""

    views: int = 1
    margin: float | None = None

    @property
    def name(self) -> str:
        if self.views == 1:
            return "off"
        return "full" if self.margin is None else "adaptive"

    def describe(self) -> str:
        if self.name == "adaptive":
            return f"adaptive (8 views when top-1 − top-2 probability < {self.margin:g}, else 1)"
        return {"off": "off (1 view)", "full": "full (8 views of every image)"}[self.name]

    def as_dict(self) -> dict[str, Any]:
        return {"policy": self.name, "views": self.views, "margin": self.margin, "text": self.describe()}

    def params(self) -> dict[str, Any]:
        """The estimator parameters that select this policy."""
        return {"tta": self.views == VIEWS, "tta_margin": self.margin}


def estimator_policy(estimator: Any) -> TtaPolicy:
    """The policy an estimator predicts with (``off`` for families without test-time augmentation)."""
    if not bool(getattr(estimator, "tta", False)):
        return TtaPolicy()
    return TtaPolicy(VIEWS, getattr(estimator, "tta_margin", None))


def parse_policy(text: str) -> TtaPolicy | None:
    """``--tta`` values: ``bundle`` (None: the bundle's own policy), ``off``, ``full``, ``adaptive`` (margin
    0.5) or ``adaptive=M``."""
    text = text.strip().lower()
    if text == "bundle":
        return None
    if text == "off":
        return TtaPolicy()
    if text == "full":
        return TtaPolicy(VIEWS)
    if text == "adaptive" or text.startswith("adaptive="):
        raw = text.partition("=")[2] or "0.5"
        try:
            margin = float(raw)
        except ValueError:
            margin = float("nan")
        if not 0.0 < margin <= 1.0:
            raise SettingError(f"--tta {text}: the adaptive margin must be a number in (0, 1]")
        return TtaPolicy(VIEWS, margin)
    raise SettingError(f"--tta {text!r}: use bundle, off, full, adaptive or adaptive=MARGIN")


def _checked_policy(text: str) -> str:
    parse_policy(text)
    return text.strip().lower()


#: a ``tta`` setting in a verb's config, checked as :func:`parse_policy` reads it
TtaSetting = Annotated[str, AfterValidator(_checked_policy)]


def dihedral_nhwc(images: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 flips/rotations of ``N×H×W×C`` images, as :func:`lablens.nn.network.dihedral`
    turns ``N×C×H×W`` tensors."""
    out = np.rot90(images, k % 4, axes=(1, 2))
    return np.ascontiguousarray(out[:, :, ::-1] if k >= 4 else out)


def escalated(logits: np.ndarray, margin: float) -> np.ndarray:
    """Rows whose top-1 minus top-2 softmax probability is below ``margin``."""
    from lablens.evaluate.calibration import softmax

    if logits.shape[1] < 2:
        return np.zeros(len(logits), dtype=bool)
    top = -np.sort(-softmax(logits), axis=1)[:, :2]
    return (top[:, 0] - top[:, 1]) < margin
