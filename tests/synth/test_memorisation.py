"""The memorisation check flags exact and near copies of real images and passes new ones."""

from __future__ import annotations

import numpy as np
import pytest

from lablens.synth.memorisation import memorisation_check, pixel_features

from conftest import shape_image


def test_copies_are_flagged_and_new_images_pass() -> None:
    rng = np.random.default_rng(0)
    real = np.stack([shape_image(c, rng) for c in ("disc", "ring", "square") * 10])
    noise = np.random.default_rng(1).normal(0, 3, real[5].shape)
    near = np.clip(real[5] + noise, 0, 255).astype(np.uint8)  # a copy with sensor noise
    new = [
        shape_image(c, np.random.default_rng(100 + k)) for k, c in enumerate(("disc", "ring", "square") * 2)
    ]
    synthetic = np.stack([real[3], near, *new])
    found = memorisation_check(pixel_features(real), pixel_features(synthetic))
    assert [n.flagged for n in found] == [True, True] + [False] * len(new)
    assert (found[0].nearest, found[0].reason) == (3, "a copy of a real image") and found[1].nearest == 5
    assert "closer to one real image" in found[1].reason and found[1].ratio < 0.2


def test_the_check_needs_two_real_images() -> None:
    with pytest.raises(ValueError, match="at least 2 real"):
        memorisation_check(np.zeros((1, 4)), np.zeros((3, 4)))
