"""The whole-cell IIF detector finds cells whose stain is in the cytoplasm, where the nuclei detector cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import cyto_phantom_fields, cyto_recall


@pytest.fixture(scope="module")
def cyto_fields(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cyto_phantom_fields(tmp_path_factory.mktemp("cyto"), n=6, seed=0)


def test_whole_cells_are_found_on_cytoplasmic_fields(cyto_fields: Path) -> None:
    cells, nuclei = cyto_recall(cyto_fields, "cells"), cyto_recall(cyto_fields, "nuclei")
    # measured on these 9 fields (IoU >= 0.5): cells 0.894 fibrillar / 0.923 mitochondrial (0.90 / 0.91 and
    # 0.88 / 0.90 on 15 fields of two other seeds), nuclei detector 0.43-0.50; the 0.9 is met by the
    # detector learned from boxes (tests/fields/test_learned_detector.py)
    assert min(cells.values()) >= 0.85
    assert all(cells[k] >= nuclei[k] + 0.2 for k in cells)
