"""Strict JSON: what cannot be estimated is null, never NaN."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lablens import jsonio


def _strict(text: str) -> object:
    def refuse(constant: str) -> None:
        raise AssertionError(f"non-strict JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_and_numpy_becomes_python(tmp_path: Path) -> None:
    doc = {
        "nan": float("nan"),
        "inf": -math.inf,
        "np": np.float32(np.nan),
        "arr": np.array([1.5, np.nan]),
        "i": np.int64(3),
        np.str_("k"): [np.float64(np.inf), Path("/a/b")],
        "ok": 0.25,
    }
    back = _strict(jsonio.dumps(doc))
    assert back == {
        "nan": None,
        "inf": None,
        "np": None,
        "arr": [1.5, None],
        "i": 3,
        "k": [None, "/a/b"],
        "ok": 0.25,
    }
    _strict(jsonio.write_json(tmp_path / "x.json", doc).read_text())


def test_what_json_cannot_hold_is_refused() -> None:
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        jsonio.dumps({"x": object()})
