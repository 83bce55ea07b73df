"""The degradation protocol: graded, reproducible blur (and sensor noise) applied to any image.

Sampling is kept apart from application so runs replay exactly: :func:`sample_degradation` draws the
random parts (kind, motion angle, noise seed) from a generator into a :class:`Degradation` record, and
:func:`apply_degradation` is a pure function of the image and that record. The record is what manifests
store, so any degraded image can be rebuilt from its clean source.

A blur *level* L sets the PSF's per-axis spread to ``L * side / 96`` pixels (``side``: the image's short
side), the same scale as the phantoms' ``--blur`` levels: at a 96-pixel crop, level 4 is a 4-pixel sd. Level
0 is the clean image, untouched (no noise either).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from lablens.errors import SettingError
from lablens.quality.psf import KINDS, psf_kernel, psf_size_parameter

LEVEL_STEP = 1.0 / 96.0  # PSF sd per level as a fraction of the image's short side
MAX_LEVEL = 8


@dataclass(frozen=True)
class Degradation:
    """Everything needed to rebuild one degraded image from its clean source."""

    level: int
    kind: str = "none"
    sd_frac: float = 0.0  # PSF per-axis sd as a fraction of the short side
    angle_deg: float = 0.0
    noise_sigma: float = 0.0  # Gaussian sensor noise sd, in units of the 0..1 intensity range
    noise_seed: int = 0

    def psf_sd(self, side: int) -> float:
        """PSF per-axis sd in pixels for an image whose short side is ``side``."""
        return self.sd_frac * side

    def record(self, side: int) -> dict[str, float | int | str]:
        """Manifest columns: the record plus the PSF size in pixels for this image."""
        sd = self.psf_sd(side)
        size = psf_size_parameter(self.kind, sd) if self.kind != "none" else 0.0
        return {
            **{f"blur_{k}" if not k.startswith("noise") else k: v for k, v in asdict(self).items()},
            "blur_sd_px": round(sd, 4),
            "blur_size_px": round(size, 4),
        }


def parse_levels(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"0-4"`` or ``"0,2,4"`` (or a sequence) → sorted unique levels in ``0..MAX_LEVEL``."""
    if not isinstance(text, str):
        levels = {int(v) for v in text}
    else:
        levels = set()
        for part in text.replace(" ", "").split(","):
            if not part:
                continue
            try:
                if "-" in part:
                    lo, hi = (int(v) for v in part.split("-", 1))
                    levels.update(range(lo, hi + 1))
                else:
                    levels.add(int(part))
            except ValueError:
                raise SettingError(f"blur levels must look like '0-4' or '0,2,4', got {text!r}") from None
    if not levels or min(levels) < 0 or max(levels) > MAX_LEVEL:
        raise SettingError(f"blur levels must lie in 0..{MAX_LEVEL}, got {text!r}")
    return tuple(sorted(levels))


def parse_kinds(text: str | Sequence[str]) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in (text.split(",") if isinstance(text, str) else text) if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown:
        raise SettingError(f"blur kinds must be among {', '.join(KINDS)}, got {text!r}")
    return kinds


def sample_degradation(
    level: int, kinds: Sequence[str], rng: np.random.Generator, noise: float = 0.01
) -> Degradation:
    """Draw the random parts of a level-``level`` degradation: kind, motion angle, noise sd and seed.

    ``noise`` is the largest sensor-noise sd (0..1 intensity units); each degraded image draws its own
    in ``[0, noise]``. Level 0 draws nothing and returns the identity.
    """
    if level == 0:
        return Degradation(level=0)
    kind = str(kinds[int(rng.integers(len(kinds)))])
    angle = float(rng.uniform(0.0, 180.0)) if kind == "motion" else 0.0
    return Degradation(
        level=int(level),
        kind=kind,
        sd_frac=level * LEVEL_STEP,
        angle_deg=round(angle, 3),
        noise_sigma=round(float(rng.uniform(0.0, noise)), 5) if noise > 0 else 0.0,
        noise_seed=int(rng.integers(2**31)),
    )


def degradation_kernel(d: Degradation, side: int) -> np.ndarray:
    """The PSF of ``d`` for an image whose short side is ``side`` pixels."""
    if d.kind == "none" or d.sd_frac <= 0:
        return np.ones((1, 1), np.float32)
    return psf_kernel(d.kind, d.psf_sd(side), d.angle_deg)


def apply_degradation(img: np.ndarray, d: Degradation) -> np.ndarray:
    """Blur then add noise to an ``H×W×3`` (or ``H×W``) uint8 image; a pure function of its inputs."""
    if d.level == 0 or d.kind == "none":
        return img.copy()
    k = degradation_kernel(d, min(img.shape[:2]))
    out = cv2.filter2D(img.astype(np.float32), -1, k, borderType=cv2.BORDER_REFLECT_101)
    if d.noise_sigma > 0:
        noise_rng = np.random.default_rng(d.noise_seed)
        out += noise_rng.normal(0.0, d.noise_sigma * 255.0, size=out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
