"""PSF kernels: normalised, of the promised spread, ordered by level, identity at zero."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from lablens.quality.psf import KINDS, kernel_sd, psf_kernel, psf_size_parameter


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sd", [1.0, 2.0, 4.0])
def test_kernels_are_normalised_and_have_the_requested_spread(kind: str, sd: float) -> None:
    k = psf_kernel(kind, sd, angle_deg=0.0)
    assert k.dtype == np.float32 and k.shape[0] % 2 == 1 and k.shape[0] == k.shape[1]
    assert k.min() >= 0 and k.sum() == pytest.approx(1.0, abs=1e-5)
    sx, sy = kernel_sd(k)
    # rasterising on pixels adds at most a pixel's own spread (1/√12) in quadrature
    assert sx == pytest.approx(sd, abs=0.2)
    if kind == "motion":
        assert sy < 0.3  # a horizontal line: no spread across it
    else:
        assert sy == pytest.approx(sx, rel=1e-6)  # isotropic


def test_identity_and_size_parameters() -> None:
    assert psf_kernel("defocus", 0.0).tolist() == [[1.0]]
    assert psf_size_parameter("defocus", 2.0) == 4.0  # disc radius = 2 sd
    assert psf_size_parameter("motion", 1.0) == pytest.approx(math.sqrt(12))
    with pytest.raises(ValueError, match="unknown blur kind"):
        psf_kernel("smear", 1.0)


def test_motion_kernel_follows_its_angle() -> None:
    sx, sy = kernel_sd(psf_kernel("motion", 3.0, angle_deg=90.0))
    assert sy == pytest.approx(3.0, abs=0.2) and sx < 0.3
    diag = kernel_sd(psf_kernel("motion", 3.0, angle_deg=45.0))
    assert diag[0] == pytest.approx(diag[1], rel=0.02)


def test_spread_grows_strictly_with_sd() -> None:
    for kind in KINDS:
        spreads = [kernel_sd(psf_kernel(kind, sd))[0] for sd in (0.5, 1.0, 1.5, 2.0, 3.0)]
        assert all(b > a for a, b in itertools.pairwise(spreads)), (kind, spreads)
