"""The settings of ``lablens analyze`` (and of the field pipeline it drives), written as ``analyze.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field

from lablens.infer.ood import DEFAULT_ALPHA, OodAlpha
from lablens.verb_config import VerbConfig
from lablens.workflows.engine_options import RayOptions


def _box(value: Any) -> Any:
    """``"x0,y0,x1,y1"`` (the command line's form) → four numbers; anything else is checked as given."""
    if isinstance(value, str):
        parts = value.split(",")
        if len(parts) != 4 or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise ValueError(f"--ignore-region {value!r}: expected four integers x0,y0,x1,y1")
        return tuple(int(p) for p in parts)
    return value


#: a pixel box ``x0, y0, x1, y1`` left out of a field (``--ignore-region``)
PixelBox = Annotated[tuple[int, int, int, int], BeforeValidator(_box)]


class AnalyzeConfig(VerbConfig):
    """How whole fields are read: the task preset, its scale and crops, the detector, the gates and the engine.

    Attributes:
        task: the field preset (``blood``, ``ana``, ``nailfold``).
        um_per_px: field scale (None: the task's; a fields CSV's ``um_per_px`` column wins per field).
        samples: ``together`` (all fields are one sample, named ``sample_id``) or ``per-field``.
        min_confidence: cells below this top probability are unidentified.
        min_cells: a differential with fewer identified cells is flagged.
        ignore_regions: pixel boxes left out of every field (scale bar, label).
        detector_kwargs: settings of the task's detector (see :mod:`lablens.fields.presets`).
        detector: a trained detector folder (``lablens train-detector``) instead of the preset's.
        verifier: a white-cell verifier (``lablens fit-verifier``); blood smears only.
        crop_um: side of a cell crop in µm (None: the task's).
        allow_crop_mismatch: analyse with a bundle trained on other crops.
        controls: ANA control fields CSV grading each sample's intensity.
        quality: a quality (blur-level) bundle; cells and fields above ``max_level`` are not evaluable.
        ood_alpha: the out-of-distribution guard's flag rate (None: off).
        engine: ``local`` or ``ray``; ``ray``: the Ray cluster and actors.
    """

    verb: ClassVar[str] = "analyze"

    task: str = "blood"
    um_per_px: float | None = None
    samples: Literal["together", "per-field"] = "together"
    sample_id: str | None = None
    min_confidence: float = 0.5
    min_cells: int = 100
    ignore_regions: list[PixelBox] = Field(default_factory=list)
    detector_kwargs: dict[str, Any] = Field(default_factory=dict)
    detector: Path | None = None
    verifier: Path | None = None
    crop_um: float | None = None
    allow_crop_mismatch: bool = False
    controls: Path | None = None
    batch_size: int = 64
    device: str = "auto"
    quality: Path | None = None
    max_level: float = 2.5
    ood_alpha: OodAlpha = DEFAULT_ALPHA
    engine: Literal["local", "ray"] = "local"
    ray: RayOptions = RayOptions()
