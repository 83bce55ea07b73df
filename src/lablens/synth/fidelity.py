"""Distances between the feature distributions of real and synthetic images: KID and FID.

KID (Bińkowski et al. 2018) is the squared maximum mean discrepancy with the cubic polynomial kernel
``k(x, y) = (x·y / d + 1)³``, estimated without bias and averaged over random subsets: it is honest at the few
hundred images a rare class has, where FID is biased upwards. FID (Heusel et al. 2017) is the Fréchet distance
of Gaussians fitted to both sets. Both take features (rows = images) from any extractor: the report uses a
classifier trained on the lab's own images, or Inception weights from a local file.

Written here rather than taken from torchmetrics or torch-fidelity: both tie the metrics to Inception features
they download; the formulas are a few lines of NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lablens.errors import SettingError


@dataclass(frozen=True)
class KID:
    """Mean and standard deviation of the unbiased KID estimate over subsets."""

    mean: float
    std: float
    subsets: int
    subset_size: int


def _poly_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel (diagonals of the within-set sums left out)."""
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def kid(
    real: np.ndarray, synthetic: np.ndarray, *, subsets: int = 50, subset_size: int = 100, seed: int = 0
) -> KID:
    """KID between feature sets (``n×d``); subsets of ``min(subset_size, n_real, n_synthetic)`` rows each."""
    real, synthetic = np.asarray(real, np.float64), np.asarray(synthetic, np.float64)
    size = min(subset_size, len(real), len(synthetic))
    if size < 2:
        raise SettingError(
            f"KID needs at least 2 images on each side ({len(real)} real, {len(synthetic)} synthetic)"
        )
    rng = np.random.default_rng(seed)
    values = [
        _poly_mmd2(
            real[rng.choice(len(real), size, replace=False)],
            synthetic[rng.choice(len(synthetic), size, replace=False)],
        )
        for _ in range(subsets)
    ]
    return KID(float(np.mean(values)), float(np.std(values)), subsets, size)


def fid(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the two feature sets (``n×d``, n ≥ 2).

    ``tr √(Σ₁Σ₂)`` is computed exactly as the nuclear norm of ``A Bᵀ``, where ``Σ₁ = AᵀA`` and ``Σ₂ = BᵀB``
    (``A``, ``B`` the centred rows over √(n − 1)): the non-zero eigenvalues of ``Σ₁Σ₂`` are the squared singular
    values of ``A Bᵀ``. An n×m problem instead of a d×d matrix square root — fast and well defined when a rare
    class has fewer images than there are features, where ``sqrtm`` is singular.
    """
    real, synthetic = np.asarray(real, np.float64), np.asarray(synthetic, np.float64)
    if len(real) < 2 or len(synthetic) < 2:
        raise SettingError("FID needs at least 2 images on each side")
    mu1, mu2 = real.mean(0), synthetic.mean(0)
    a = (real - mu1) / np.sqrt(len(real) - 1)
    b = (synthetic - mu2) / np.sqrt(len(synthetic) - 1)
    cross = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    return float(((mu1 - mu2) ** 2).sum() + (a**2).sum() + (b**2).sum() - 2 * cross)
