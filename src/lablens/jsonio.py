"""Strict JSON for every file lablens writes: what is not a number is ``null``, never ``NaN``.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which no other JSON reader accepts (a LIS, a
browser's ``JSON.parse``, ``jq``). Every JSON lablens writes goes through :func:`dumps`, which turns non-finite
floats into ``null`` (a value that cannot be estimated), NumPy scalars and arrays into plain numbers and lists and
paths into strings, and then refuses anything that would still not be strict JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePath
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """``value`` with NaN/±inf as None, NumPy values as Python ones and paths as strings (containers copied)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return [jsonable(v) for v in sorted(value, key=str)]
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _key(k: Any) -> Any:
    if isinstance(k, (str, int, bool)) or k is None:
        return k
    if isinstance(k, np.generic):
        return _key(k.item())
    if isinstance(k, float):
        return k if math.isfinite(k) else str(k)
    return str(k)


def dumps(doc: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`jsonable` ``(doc)``, strict (``allow_nan=False``)."""
    return json.dumps(jsonable(doc), allow_nan=False, **kwargs)


def write_json(path: str | Path, doc: Any, indent: int | None = 1, **kwargs: Any) -> Path:
    """Write ``doc`` as strict JSON (UTF-8) to ``path``."""
    path = Path(path)
    path.write_text(dumps(doc, indent=indent, **kwargs), encoding="utf-8")
    return path
