"""A multiple-instance bundle's call on whole samples: one bag of cell crops per sample.

Used by ``lablens analyze`` and the review service alike, so a sample is called the same way in both: the
sample's probabilities and each cell's own probabilities are calibrated with the bundle's temperature; the
attention weights (summing to 1 over the sample's cells) say which cells drove the call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lablens.errors import SettingError
from lablens.evaluate.calibration import apply_temperature
from lablens.infer.bundle import Bundle

#: how a sample called this way is described in reports and on the review page
METHOD = "multiple-instance (the sample's cells together, weighted by attention)"


@dataclass(frozen=True)
class BagCall:
    """``sample``: class probabilities of the sample; ``cells``: each cell's probabilities scored alone
    (cells × classes); ``attention``: one weight per cell."""

    sample: np.ndarray
    cells: np.ndarray
    attention: np.ndarray


def call_bags(bundle: Bundle, bags: Sequence[np.ndarray], device: str = "auto") -> list[BagCall]:
    """One call per bag (an array of cell crops, cells × H × W × C); bags must hold at least one cell."""
    if bundle.inputs != "bags":
        raise SettingError(f"bundle {bundle.hash[:12]} classifies single images, not samples of cells")
    outs = bundle.estimator.bag_outputs(list(bags), device=device) if len(bags) else []
    t = bundle.temperature
    return [
        BagCall(
            apply_temperature(o["logits"][None], t)[0],
            apply_temperature(o["cell_logits"], t),
            np.asarray(o["attention"]),
        )
        for o in outs
    ]
