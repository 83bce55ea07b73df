"""Real data: the PBC blood-cell set in ../shared/data validates cleanly (skips when absent)."""

from __future__ import annotations

import pytest

from lablens.data.splits import make_split
from lablens.data.validate import load_dataset

from conftest import shared_data

pytestmark = pytest.mark.shared_data


def test_pbc_validates_and_splits() -> None:
    manifest, report = load_dataset(shared_data("pbc"), min_groups_per_class=3)
    assert report.layout == "csv" and report.n_usable == 1600 and report.n_skipped == 0
    assert manifest.classes == [
        "basophil",
        "eosinophil",
        "erythroblast",
        "ig",
        "lymphocyte",
        "monocyte",
        "neutrophil",
        "platelet",
    ]
    assert "subtype" in manifest.table.columns  # metadata columns are kept
    fold = make_split(manifest.y, manifest.groups, "8:1:1", seed=0).folds[0]
    assert len(fold.test) == 160 and len(fold.val) == 160
