"""``lablens degrade``: every image at every level, replayable, twins in one group, input never overwritten."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lablens.data.splits import make_split
from lablens.data.validate import load_dataset
from lablens.errors import RunError
from lablens.quality.degrade import Degradation, apply_degradation
from lablens.workflows.degrade import degrade

from conftest import write_shape_folder


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_degrade_writes_every_level_with_its_recipe(tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "shapes", per_class=4, size=48)
    (data / "disc" / "broken.png").write_bytes(b"not an image")
    before = _digest(data)
    res = degrade(data, tmp_path / "deg", levels="0-3", progress=False)
    assert _digest(data) == before  # the input is never touched
    m = res.manifest
    assert res.n_sources == 12 and res.n_skipped == 1 and len(m) == 12 * 4
    assert sorted(m["blur_level"].unique()) == [0, 1, 2, 3]
    assert (m.groupby("source")["blur_level"].nunique() == 4).all()
    assert (m.groupby("source")["group"].nunique() == 1).all()  # twins share their source's group
    assert set(m.loc[m.blur_level == 0, "blur_kind"]) == {"none"}
    assert set(m.loc[m.blur_level > 0, "blur_kind"]) <= {"defocus", "gaussian", "motion"}
    assert pd.read_csv(tmp_path / "deg" / "manifest.csv").shape == m.shape
    # each copy is rebuilt exactly from its clean source and its record
    row = m[m.blur_level == 3].iloc[0]
    clean = np.asarray(Image.open(data / row["source"]).convert("RGB"))
    d = Degradation(
        level=3,
        kind=row["blur_kind"],
        sd_frac=row["blur_sd_frac"],
        angle_deg=row["blur_angle_deg"],
        noise_sigma=row["noise_sigma"],
        noise_seed=int(row["noise_seed"]),
    )
    written = np.asarray(Image.open(tmp_path / "deg" / row["path"]))
    assert np.array_equal(written, apply_degradation(clean, d))


def test_degrade_replays_and_never_overwrites(tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "shapes", per_class=3, size=40)
    degrade(data, tmp_path / "a", levels="0,2", seed=5, progress=False)
    degrade(data, tmp_path / "b", levels="0,2", seed=5, progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    with pytest.raises(RunError, match="not empty"):
        degrade(data, tmp_path / "a", progress=False)


def test_grouped_split_keeps_blurred_twins_with_their_clean_image(tmp_path: Path) -> None:
    data = write_shape_folder(tmp_path / "shapes", per_class=10, size=40)
    degrade(data, tmp_path / "deg", levels="0-2", progress=False)
    manifest, _ = load_dataset(tmp_path / "deg")
    fold = make_split(manifest.y, manifest.groups, "8:1:1", seed=0).folds[0]
    src = manifest.table["source"].to_numpy()
    train, test = set(src[fold.train]), set(src[fold.test])
    assert train and test and not (train & test)
