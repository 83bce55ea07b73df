"""ICAP codes and compartments: cytoplasmic patterns are reported apart from nuclear ones."""

from __future__ import annotations

import numpy as np

from lablens.fields.aggregate import ana_report
from lablens.fields.cell_crops import CropGeometry, preset_for_bundle
from lablens.fields.icap import icap_code, pattern_family
from lablens.fields.presets import get_preset


def test_names_codes_and_synonyms_map_to_their_compartment() -> None:
    assert icap_code("Homogeneous") == "AC-1" and pattern_family("HOM") == "nuclear"
    assert icap_code("mitochondrial") == "AC-21" and pattern_family("AMA") == "cytoplasmic"
    assert pattern_family("rods and rings") == "cytoplasmic" and pattern_family("NuMA") == "mitotic"
    assert pattern_family("ac-19") == "cytoplasmic" and icap_code("AC_3") == "AC-3"
    assert pattern_family("NEG") == "negative" and pattern_family("something else") is None


def test_a_serum_with_a_nuclear_and_a_cytoplasmic_pattern_reports_both_compartments() -> None:
    classes = ["homogeneous", "mitochondrial", "centromere", "negative", "blob"]
    proba = np.array([[0.9, 0.05, 0.03, 0.01, 0.01]] * 6 + [[0.05, 0.9, 0.03, 0.01, 0.01]] * 4)
    doc = ana_report(proba, classes)
    assert doc["dominant_pattern"] == "homogeneous" and doc["icap"] == "AC-1"
    assert doc["compartments"]["nuclear"] == {"pattern": "homogeneous", "icap": "AC-1", "cell_share": 0.6}
    assert doc["compartments"]["cytoplasmic"] == {
        "pattern": "mitochondrial",
        "icap": "AC-21",
        "cell_share": 0.4,
    }
    assert doc["patterns_without_icap_family"] == ["blob"]
    few = ana_report(np.array([[0.9, 0.05, 0.03, 0.01, 0.01]] * 9 + [[0.05, 0.9, 0.03, 0.01, 0.01]]), classes)
    assert few["compartments"]["cytoplasmic"] is None  # 1 of 10 cells is below the mixed share


def test_a_negative_serum_has_no_code_and_no_compartment_pattern() -> None:
    doc = ana_report(np.array([[0.1, 0.1, 0.8]] * 5), ["fibrillar", "mitochondrial", "negative"])
    assert doc["result"] == "negative" and doc["icap"] is None
    assert doc["compartments"] == {"cytoplasmic": None}


def test_the_ana_preset_detects_whole_cells_for_bundles_that_learned_from_them() -> None:
    ana = get_preset("ana")
    nuclear = CropGeometry(24.0, "nucleus", "nuclei")
    whole = CropGeometry(30.0, "cell", "annotated boxes")
    assert preset_for_bundle(ana, nuclear, ["fibrillar", "mitochondrial"]) == (ana, None)
    chosen, why = preset_for_bundle(ana, whole, ["homogeneous"])
    assert chosen.detector == "cells" and chosen.classify == ("cell",) and "whole cells" in why
    chosen, why = preset_for_bundle(ana, None, ["fibrillar", "mitochondrial", "negative"])
    assert chosen.detector == "cells" and "cytoplasmic" in why
    assert preset_for_bundle(ana, None, ["homogeneous", "mitochondrial"]) == (ana, None)
    blood = get_preset("blood")
    assert preset_for_bundle(blood, whole, ["fibrillar"]) == (blood, None)
