"""KID and FID on feature sets whose distances are known."""

from __future__ import annotations

import numpy as np
import pytest

from lablens.synth.fidelity import fid, kid


def test_fid_of_a_translated_set_is_the_squared_shift() -> None:
    x = np.random.default_rng(0).normal(size=(200, 5))
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    assert fid(x, x) == pytest.approx(0.0, abs=1e-6)
    assert fid(x, x + shift) == pytest.approx(float((shift**2).sum()), rel=1e-6)


def test_kid_is_unbiased_near_zero_and_grows_with_the_gap() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(150, 8)), rng.normal(size=(150, 8))
    same = kid(a, b, subsets=40, subset_size=50)
    apart = kid(a, b + 1.0, subsets=40, subset_size=50)
    assert abs(same.mean) < 3 * same.std + 1e-3  # unbiased: centred on zero for one distribution
    assert apart.mean > 10 * max(abs(same.mean), same.std)
    assert same.subset_size == 50 and kid(a[:20], b, subset_size=50).subset_size == 20


def test_kid_needs_two_images_a_side() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        kid(np.zeros((1, 3)), np.zeros((5, 3)))


def test_fid_matches_the_matrix_square_root_formula() -> None:
    from scipy import linalg

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 5))
    y = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5)) + 0.5
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    reference = (
        ((x.mean(0) - y.mean(0)) ** 2).sum()
        + np.trace(s1)
        + np.trace(s2)
        - 2 * np.trace(np.real(linalg.sqrtm(s1 @ s2)))
    )
    assert fid(x, y) == pytest.approx(reference, rel=1e-9)
