"""Whole fields → detected cells → per-cell classes → a sample-level answer (``lablens analyze``).

Importing the package registers every detector (:data:`lablens.fields.detection.DETECTORS`).
"""

from __future__ import annotations

from lablens.fields import brightfield, fluorescence, learned  # noqa: F401  (their decorators fill the registry)
