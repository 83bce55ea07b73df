"""Quality flags relative to the model's own images (the bundle's image reference)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lablens.quality.reference import ImageReference

from conftest import shape_image, shared_data


def _cells(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([shape_image(("disc", "ring", "square")[i % 3], rng, 64) for i in range(n)])


def test_flags_name_what_differs_from_the_training_images() -> None:
    ref = ImageReference.fit(_cells(120, 0))
    assert ref is not None and ref.n_images == 120
    normal = _cells(60, 1)
    flagged = sum(bool(f) for f in ref.flags(normal))
    assert flagged <= 3  # ~0.25 % per tail and statistic; fresh images of the same kind are rarely flagged
    sharp = normal[0]
    bright = np.clip(sharp.astype(np.float32) * 1.6, 0, 255).astype(np.uint8)
    dark = (sharp * 0.4).astype(np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 3)
    names = [[f.name for f in fl] for fl in ref.flags(np.stack([bright, dark, blurred]))]
    assert "overexposed" in names[0] and "underexposed" in names[1] and names[2] == ["blurred"]
    reason = ref.flags(bright[None])[0][0].reason
    assert "brighter than 99.75 % of the training images" in reason and "clipped white" in reason


def test_a_reference_needs_enough_images_and_round_trips_through_the_card() -> None:
    assert ImageReference.fit(_cells(10, 0)) is None
    ref = ImageReference.fit(_cells(40, 0))
    back = ImageReference.from_card(ref.to_card())
    assert back is not None and back.n_images == 40
    for k, v in ref.percentiles.items():
        np.testing.assert_allclose(back.percentiles[k], v, rtol=1e-5, atol=1e-6)
    assert ImageReference.from_card(None) is None
    assert ImageReference.from_card({**ref.to_card(), "percentiles": [1, 50, 99]}) is None  # other version


@pytest.mark.shared_data
def test_normal_pbc_cells_are_not_flagged_and_overexposed_ones_are() -> None:
    """CellaVision backgrounds are bright and partly clipped: a fixed 5 % rule flagged nearly every normal cell."""
    from lablens.data.io import read_image
    from lablens.data.preprocess import to_square

    pbc = shared_data("pbc")
    files = sorted(pbc.rglob("*.jpg"))
    images = np.stack([to_square(read_image(f).pixels, 96, "pad") for f in files])
    train, test = (
        images[np.arange(len(images)) % 4 != 0],
        images[::4],
    )  # the reference never sees the test cells
    ref = ImageReference.fit(train)
    normal = [{f.name for f in fl} for fl in ref.flags(test)]
    assert np.mean([bool(f & {"overexposed", "underexposed"}) for f in normal]) <= 0.02
    gained = np.clip(test.astype(np.float32) * 1.6, 0, 255).astype(np.uint8)
    assert np.mean(["overexposed" in {f.name for f in fl} for fl in ref.flags(gained)]) >= 0.9
