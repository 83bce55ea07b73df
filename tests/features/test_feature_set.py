"""A feature set: handcrafted extractors share one cell view per crop, each through its own cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lablens.features.feature_set import FeatureSet
from lablens.features.registry import create_extractor
from lablens.phantoms import write_phantoms


def _crops(tmp_path: Path, n: int = 12) -> np.ndarray:
    from lablens.data.io import read_image
    from lablens.data.preprocess import to_square

    write_phantoms("blood-cells", tmp_path / "ph", n=16, seed=0, size=64)
    folder = tmp_path / "ph"
    files = sorted(p for p in folder.rglob("*.png"))[:n]
    return np.stack([to_square(read_image(f).pixels, 64, "pad") for f in files])


def test_columns_equal_each_extractor_alone_and_the_cache_serves_them_again(tmp_path: Path) -> None:
    crops = _crops(tmp_path)
    spec = "hu+lbp+colour+morphology"
    alone = np.concatenate([create_extractor(name).transform(crops) for name in spec.split("+")], axis=1)
    fresh = FeatureSet(spec, cache=False).transform(crops)
    np.testing.assert_array_equal(fresh, alone)
    cache = tmp_path / "cache"
    FeatureSet("lbp", cache_dir=cache).transform(crops[:5])  # one extractor partly cached already
    first = FeatureSet(spec, cache_dir=cache).transform(crops)
    again = FeatureSet(spec, cache_dir=cache).transform(crops[::-1])  # a new set reads every store from disk
    np.testing.assert_array_equal(first, alone)
    np.testing.assert_array_equal(again, alone[::-1])
    assert len(list((cache / "features").glob("*.npz"))) == 4


def test_duplicate_crops_and_an_empty_batch(tmp_path: Path) -> None:
    crops = _crops(tmp_path, n=3)
    doubled = np.concatenate([crops, crops])
    out = FeatureSet("haralick+colour", cache=False).transform(doubled)
    np.testing.assert_array_equal(out[:3], out[3:])
    empty = FeatureSet("haralick+colour", cache=False).transform(crops[:0])
    assert empty.shape == (0, len(FeatureSet("haralick+colour", cache=False).feature_names()))
