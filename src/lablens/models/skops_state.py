"""Fitted scikit-learn / LightGBM / XGBoost pipelines as bytes, without pickle.

skops (https://skops.readthedocs.io) writes an estimator as a zip of a JSON schema and arrays; loading
rebuilds only the types it is told to trust. lablens trusts classes (not functions) from scikit-learn,
LightGBM, XGBoost, NumPy and SciPy and refuses anything else with a message naming it, so a tampered bundle
cannot smuggle in a callable to run.
"""

from __future__ import annotations

import importlib
from typing import Any

import skops.io as sio

from lablens.errors import LablensError

TRUSTED_PREFIXES = ("sklearn.", "lightgbm.", "xgboost.", "numpy.", "scipy.", "builtins.", "collections.")


class UntrustedStateError(LablensError, ValueError):
    """A stored pipeline contains a type outside the allow-list."""


def dump_pipeline(pipeline: Any) -> bytes:
    return sio.dumps(pipeline)


def _is_trusted_class(name: str) -> bool:
    if not name.startswith(TRUSTED_PREFIXES):
        return False
    module, _, attr = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return False
    return isinstance(obj, type)


def load_pipeline(data: bytes) -> Any:
    types = sio.get_untrusted_types(data=data)
    refused = [t for t in types if not _is_trusted_class(t)]
    if refused:
        raise UntrustedStateError(
            f"stored pipeline contains types lablens does not load: {', '.join(sorted(refused))}"
        )
    return sio.loads(data, trusted=types)
