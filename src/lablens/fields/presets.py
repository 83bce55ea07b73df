"""Field-analysis presets: which detector finds the cells, which of them are classified, at what crop size,
and how per-cell classes become the sample's answer.

Scales (``um_per_px``) are defaults for the datasets lablens is tested on; give your microscope's calibration
with ``--um-per-px`` (or a ``um_per_px`` column in a fields CSV).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lablens.registry import Registry


@dataclass(frozen=True)
class FieldPreset:
    """How ``lablens analyze`` treats one kind of field.

    Attributes:
        name: the ``--task`` value.
        detector: registered detector name, or ``None`` to classify each whole image (nailfold frames).
        detector_kwargs: the detector's arguments (scale aside).
        um_per_px: default field scale.
        classify: detection labels that are cropped and classified (others are counted and drawn only).
        crop_um: side of a cell crop in µm.
        aggregator: ``differential`` | ``ana`` | ``verdict``.
    """

    name: str
    detector: str | None
    um_per_px: float | None
    classify: tuple[str, ...]
    crop_um: float
    aggregator: str
    detector_kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""


FIELD_PRESETS = Registry("analysis preset (--task)")
for _preset in (
    FieldPreset(
        name="blood",
        detector="smear",
        um_per_px=0.075,  # BCCD (640×480 fields); a CellaVision DM96 field is ~0.1
        classify=("wbc",),
        crop_um=36.0,  # the side of a CellaVision / PBC single-cell image
        aggregator="differential",
        description="Brightfield smear: white-cell differential with 95 % CIs, flags, unidentified cells.",
    ),
    FieldPreset(
        name="ana",
        detector="nuclei",
        um_per_px=0.093,  # the ana-fields camera (a 20 µm bar is 215 px)
        classify=("nucleus",),
        crop_um=24.0,  # an ICPR HEp-2 single-cell crop
        aggregator="ana",
        description="HEp-2 IIF: positive/negative, dominant and mixed patterns, mitotic evidence.",
    ),
    FieldPreset(
        name="nailfold",
        detector=None,
        um_per_px=None,
        classify=(),
        crop_um=0.0,
        aggregator="verdict",
        description="Capillaroscopy: each frame classified whole; the patient verdict from all frames.",
    ),
):
    FIELD_PRESETS.register(_preset.name, value=_preset, summary=_preset.description)


#: the ``ana`` task on whole cells, for bundles that learned cytoplasmic patterns from whole cells (the stain is in
#: the cytoplasm, the nuclei are dark: the nuclei detector misses most cells there)
ANA_WHOLE_CELLS = FieldPreset(
    name="ana",
    detector="cells",
    um_per_px=0.093,
    classify=("cell",),
    crop_um=30.0,  # a whole spread HEp-2 cell fits
    aggregator="ana",
    description="HEp-2 IIF on whole cells: cytoplasmic patterns (AC-15 … AC-23) reported apart from nuclear ones.",
)


def get_preset(name: str) -> FieldPreset:
    """The preset of ``--task name``; an unknown name is a one-line error listing the tasks."""
    return FIELD_PRESETS.value(name)
