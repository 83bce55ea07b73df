"""Feature spec parsing: terms, bracketed options, errors that name the problem."""

from __future__ import annotations

import pytest

from lablens.errors import ParamError, UnknownNameError
from lablens.features.registry import (
    create_extractor,
    create_extractors,
    list_extractors,
    parse_term,
    split_top,
)


def test_every_family_the_issue_names_is_registered() -> None:
    assert {"hu", "haralick", "lbp", "zernike", "colour", "morphology", "deep"} <= set(list_extractors())


def test_split_respects_brackets() -> None:
    assert split_top("deep[resnet18, stages=2+3]+hu", "+") == ["deep[resnet18, stages=2+3]", "hu"]
    assert split_top("a:b, deep[x, y=1]:svm", ",") == ["a:b", "deep[x, y=1]:svm"]
    with pytest.raises(ValueError, match="unbalanced"):
        split_top("deep[resnet18", "+")


def test_options_are_typed_and_positional_goes_to_the_declared_name() -> None:
    assert parse_term("haralick[levels=16, distances=1+2]") == (
        "haralick",
        {"levels": 16, "distances": [1, 2]},
    )
    deep = create_extractor("deep[resnet18, weights=scratch, stages=3+4]")
    assert (deep.model_name, deep.weights, deep.stages) == ("resnet18", "scratch", [3, 4])


def test_unknown_names_and_options_are_explained() -> None:
    with pytest.raises(UnknownNameError, match="did you mean haralick"):
        create_extractors("hu+haralik")
    with pytest.raises(ParamError, match=r"feature extractor 'lbp': no setting 'colour' \(it takes points, radii\)"):
        create_extractor("lbp[colour=1]")
    with pytest.raises(ValueError, match="no positional"):
        create_extractor("hu[7]")
