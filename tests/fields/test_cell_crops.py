"""Crop geometry: what a bundle was trained on against what analysis would crop."""

from __future__ import annotations

from lablens.fields.cell_crops import CropGeometry, geometry_mismatch, preset_geometry
from lablens.fields.presets import get_preset


def test_same_geometry_passes_and_round_trips() -> None:
    g = preset_geometry(get_preset("ana"), 64)
    assert g == CropGeometry(24.0, "nucleus", "nuclei", image_size=64)
    assert CropGeometry.from_dict(g.to_dict()) == g and geometry_mismatch(g, g) is None


def test_size_object_and_centring_differences_name_both() -> None:
    trained = CropGeometry(24.0, "nucleus", "nuclei")
    level, msg = geometry_mismatch(trained, CropGeometry(36.0, "nucleus", "nuclei"))
    assert level == "refuse" and "50%" in msg and "24 µm" in msg and "36 µm" in msg
    assert geometry_mismatch(trained, CropGeometry(27.0, "nucleus", "nuclei"))[0] == "warn"
    assert geometry_mismatch(trained, CropGeometry(24.0, "cell", "cells"))[0] == "refuse"
    assert (
        geometry_mismatch(trained, CropGeometry(24.0, "nucleus", "nuclei", "top-left corner"))[0] == "refuse"
    )
    level, msg = geometry_mismatch(None, CropGeometry(24.0, "nucleus", "nuclei"))
    assert level == "warn" and "records no crop geometry" in msg
