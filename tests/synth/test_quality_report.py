"""The quality report of a synthetic set: distances per class with a real-vs-real floor, copies flagged with
their pairs, montages, and a page that names what it shows."""

from __future__ import annotations

import numpy as np
import pytest

from lablens.synth.memorisation import pixel_features
from lablens.synth.report import montage, quality_document, render_report

from conftest import shape_image


def _shapes(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([shape_image(kind, rng, 32) for _ in range(n)])


def test_copies_are_flagged_with_their_pairs_and_new_images_pass() -> None:
    real = {"ring": _shapes("ring", 12, 0)}
    copies = {"ring": real["ring"][[3, 7, 3]]}
    doc = quality_document(real, copies, {"pixels": pixel_features})
    memo = doc["classes"]["ring"]["memorisation"]
    assert (memo["flagged"], memo["checked"]) == (3, 3)
    assert [(p["synthetic"], p["real"]) for p in memo["pairs"]] == [(0, 3), (1, 7), (2, 3)]
    assert all(p["reason"] == "a copy of a real image" for p in memo["pairs"])
    new = np.stack([shape_image("ring", np.random.default_rng(100 + k), 32) for k in range(10)])
    fresh = quality_document(real, {"ring": new}, {"pixels": pixel_features})
    memo = fresh["classes"]["ring"]["memorisation"]
    assert memo["flagged"] == 0 and len(memo["pairs"]) == 8  # the closest pairs, for the reader to judge
    assert [p["ratio"] for p in memo["pairs"]] == sorted(p["ratio"] for p in memo["pairs"])


def test_distances_rank_a_wrong_class_above_new_images_of_the_right_one() -> None:
    real = {"ring": _shapes("ring", 20, 0)}
    good = quality_document(real, {"ring": _shapes("ring", 20, 1)}, {"pixels": pixel_features})
    bad = quality_document(real, {"ring": _shapes("square", 20, 1)}, {"pixels": pixel_features})
    g = good["classes"]["ring"]["features"]["pixels"]
    b = bad["classes"]["ring"]["features"]["pixels"]["synthetic_vs_real"]
    assert b["kid"] > g["synthetic_vs_real"]["kid"] and b["fid"] > g["synthetic_vs_real"]["fid"]
    assert g["real_vs_real"]["kid"] == pytest.approx(g["real_vs_real"]["kid"])  # present, a number
    assert g["real_vs_real"]["kid"] < b["kid"]


def test_montage_tiles_rows_and_the_page_names_each_class() -> None:
    rows = [_shapes("ring", 3, 0), _shapes("disc", 12, 0)]
    sheet = montage(rows, tile=16, columns=10)
    assert sheet.shape == (2 * 18 + 2, 10 * 18 + 2, 3) and sheet.dtype == np.uint8
    np.testing.assert_array_equal(sheet[2 : 2 + 16, 3 * 18 + 2 : 3 * 18 + 18], 255)  # row 1 has 3 tiles
    real = {"ring": _shapes("ring", 12, 0)}
    syn = {"ring": real["ring"][[3, 7]]}
    html = render_report(
        quality_document(real, syn, {"pixels": pixel_features}), real, syn, title="t <b>", notes=["a note"]
    )
    assert "2 of 2 flagged" in html and "a copy of a real image" in html and "a note" in html
    assert "t &lt;b&gt;" in html and html.count("data:image/png;base64,") == 2


def test_a_generator_that_repeats_itself_is_flagged_as_collapsed() -> None:
    real = {"ring": _shapes("ring", 12, 0)}
    same = {"ring": np.repeat(_shapes("ring", 1, 5), 12, axis=0)}
    varied = {"ring": np.stack([shape_image("ring", np.random.default_rng(100 + k), 32) for k in range(12)])}
    collapsed = quality_document(real, same, {"pixels": pixel_features})["classes"]["ring"]
    fine = quality_document(real, varied, {"pixels": pixel_features})["classes"]["ring"]
    assert collapsed["diversity"] == 0.0 and collapsed["collapsed"]
    assert 0.7 < fine["diversity"] < 1.4 and not fine["collapsed"]
    html = render_report(quality_document(real, same, {"pixels": pixel_features}), real, same, title="t")
    assert "collapsed" in html
