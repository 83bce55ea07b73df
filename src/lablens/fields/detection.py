"""The one record every detector returns, and the detector registry.

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


_DETECTORS: dict[str, Callable[..., Detector]] = {}


def register_detector(name: str) -> Callable[[Callable[..., Detector]], Callable[..., Detector]]:
    """Decorator registering a detector class under ``name``."""

    def deco(factory: Callable[..., Detector]) -> Callable[..., Detector]:
        if name in _DETECTORS and _DETECTORS[name] is not factory:
            raise ValueError(f"detector {name!r} is already registered")
        _DETECTORS[name] = factory
        return factory

    return deco


def _ensure_loaded() -> None:
    from lablens.fields import brightfield, fluorescence, learned  # noqa: F401  (runs the decorators)


def list_detectors() -> list[str]:
    _ensure_loaded()
    return sorted(_DETECTORS)


def create_detector(name: str, **kwargs: Any) -> Detector:
    """The detector registered as ``name`` built with explicit keyword arguments."""
    _ensure_loaded()
    if name not in _DETECTORS:
        raise KeyError(f"unknown detector {name!r}; registered: {', '.join(sorted(_DETECTORS))}")
    return _DETECTORS[name](**kwargs)


def box_from_center(cx: float, cy: float, side: float, width: int, height: int) -> tuple[int, int, int, int]:
    """A square box of ``side`` pixels centred on ``(cx, cy)``, clipped to the image."""
    half = side / 2
    return (
        max(0, round(cx - half)),
        max(0, round(cy - half)),
        min(width, round(cx + half)),
        min(height, round(cy + half)),
    )
