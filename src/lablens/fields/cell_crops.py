"""The one way cells are found on a field and cropped, for training and for analysis alike.

:func:`field_cells` runs the preset's detector at the field's scale and crops the objects it classifies at the
preset's physical size (:func:`~lablens.fields.crops.crop_cells`). A bundle records the :class:`CropGeometry`
its training crops were made with; ``lablens analyze`` compares it with the geometry of the fields' crops
(:func:`geometry_mismatch`) so a model never silently sees cells at another scale or centring than it learned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lablens.errors import SettingError
from lablens.fields.crops import crop_cells
from lablens.fields.detection import Detection, create_detector
from lablens.fields.icap import CYTOPLASMIC, families
from lablens.fields.presets import ANA_WHOLE_CELLS, FieldPreset

#: relative difference of crop side beyond which analysis refuses (warns from RELATIVE_WARN up to it)
RELATIVE_REFUSE = 0.25
RELATIVE_WARN = 0.10


@dataclass(frozen=True)
class CropGeometry:
    """How single-cell images were made: ``side_um`` µm square around the ``centring`` point of each detected
    ``object`` (``nucleus``, ``wbc`` …), by ``detector``, resized to ``image_size`` px."""

    side_um: float
    object: str
    detector: str | None
    centring: str = "detection box centre"
    image_size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CropGeometry:
        return cls(
            float(d["side_um"]),
            str(d.get("object", "")),
            d.get("detector"),
            str(d.get("centring", "detection box centre")),
            int(d.get("image_size", 0)),
        )

    def describe(self) -> str:
        return f"{self.side_um:g} µm around the {self.centring} of each {self.object or 'object'}"


def preset_for_bundle(
    preset: FieldPreset, trained: CropGeometry | None, classes: list[str]
) -> tuple[FieldPreset, str | None]:
    """The IIF preset follows what the bundle learned from: whole cells (the ``cells`` detector) when its crop
    geometry says so or, with no recorded geometry, when all of its positive patterns are cytoplasmic; nuclei
    otherwise. Returns the preset and a line saying why it changed (``None`` when it did not)."""
    if preset.aggregator != "ana":
        return preset, None
    if trained is not None and trained.object in {"nucleus", "cell"}:
        whole = trained.object == "cell"
        why = f"the bundle was trained on crops of whole cells ({trained.detector})"
    else:
        whole = families(classes) == {CYTOPLASMIC}
        why = "all of the bundle's patterns are cytoplasmic (ICAP AC-15 … AC-23)"
    if whole and preset.detector != ANA_WHOLE_CELLS.detector:
        return ANA_WHOLE_CELLS, f"whole cells detected ('cells' detector): {why}"
    return preset, None


def preset_geometry(preset: FieldPreset, image_size: int, crop_um: float | None = None) -> CropGeometry:
    return CropGeometry(
        float(crop_um or preset.crop_um),
        "+".join(preset.classify),
        preset.detector,
        image_size=int(image_size),
    )


def geometry_mismatch(trained: CropGeometry | None, analysed: CropGeometry) -> tuple[str, str] | None:
    """``(level, message)`` when the analysis crops would differ from the bundle's training crops; level is
    ``refuse`` (side off by more than 25 %, or another object or centring) or ``warn`` (10–25 %, or unknown)."""
    if trained is None:
        return (
            "warn",
            f"the bundle records no crop geometry; analysis crops are {analysed.describe()}: check that the "
            "training images were made the same way",
        )
    both = f"trained on {trained.describe()}, analysing {analysed.describe()}"
    if trained.object and analysed.object and trained.object != analysed.object:
        return "refuse", f"crop objects differ: {both}"
    if trained.centring != analysed.centring:
        return "refuse", f"crop centring differs: {both}"
    rel = abs(trained.side_um - analysed.side_um) / trained.side_um
    if rel > RELATIVE_REFUSE:
        return "refuse", f"crop sizes differ by {rel:.0%}: {both}"
    if rel > RELATIVE_WARN:
        return "warn", f"crop sizes differ by {rel:.0%}: {both}"
    return None


def field_cells(
    image: np.ndarray,
    preset: FieldPreset,
    um_per_px: float | None,
    detector_kwargs: dict[str, Any],
    size: int,
    crop_um: float | None = None,
) -> tuple[list[Detection], np.ndarray, np.ndarray]:
    """Detections of a field, the indices of those classified, and their ``size``-px crops."""
    if preset.detector is None:
        raise SettingError(f"task {preset.name!r} classifies whole frames; it has no cells to crop")
    if not um_per_px or um_per_px <= 0:
        raise SettingError("the field scale (um_per_px) is needed to crop cells at a physical size")
    dets = create_detector(preset.detector, um_per_px=um_per_px, **detector_kwargs).detect(image)
    todo = np.array([i for i, d in enumerate(dets) if d.label in preset.classify], dtype=np.int64)
    crops = crop_cells(
        image, [dets[i] for i in todo], float(crop_um or preset.crop_um) / float(um_per_px), size
    )
    return dets, todo, crops
