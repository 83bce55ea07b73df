"""The one record every detector returns, and the detector registry (filled when :mod:`lablens.fields` is
imported).

A detector is a plain object with ``detect(image: H×W×3 uint8 RGB) -> list[Detection]``, registered by
name per modality (``smear`` for brightfield blood smears, ``nuclei`` for fluorescence IIF). Detectors take
their parameters in micrometres together with the field's scale (``um_per_px``), so one configuration
serves every camera and magnification.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from lablens.registry import Registry


@dataclass
class Detection:
    """One detected object.

    Attributes:
        label: object kind (``wbc``, ``rbc``, ``platelet``, ``nucleus``).
        box: ``(x0, y0, x1, y1)`` in pixels, ``x1``/``y1`` exclusive.
        score: detector confidence in [0, 1] (used to rank matches in evaluation).
        area: segmented area in pixels (the nucleus for a white cell).
        attrs: extra per-object values (``mitotic``, ``edge``, ``mean_intensity`` ...).
    """

    label: str
    box: tuple[int, int, int, int]
    score: float = 1.0
    area: int = 0
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return ((x0 + x1) / 2, (y0 + y1) / 2)


class Detector(Protocol):
    um_per_px: float | None

    def detect(self, image: np.ndarray) -> list[Detection]: ...


DETECTORS = Registry("detector")


def register_detector(name: str) -> Callable[[Callable[..., Detector]], Callable[..., Detector]]:
    """Decorator registering a detector class under ``name`` (its settings: its ``__init__``'s)."""
    return DETECTORS.register(name)


def list_detectors() -> list[str]:
    return DETECTORS.names()


def create_detector(name: str, **kwargs: Any) -> Detector:
    """The detector registered as ``name`` built with explicit, checked keyword arguments."""
    return DETECTORS.create(name, **kwargs)


def box_from_center(cx: float, cy: float, side: float, width: int, height: int) -> tuple[int, int, int, int]:
    """A square box of ``side`` pixels centred on ``(cx, cy)``, clipped to the image."""
    half = side / 2
    return (
        max(0, round(cx - half)),
        max(0, round(cy - half)),
        min(width, round(cx + half)),
        min(height, round(cy + half)),
    )
