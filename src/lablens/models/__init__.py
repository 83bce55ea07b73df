"""Model families. Importing this package registers every built-in estimator."""

from __future__ import annotations

from lablens.models import classical, deep, head, mil, multitask  # noqa: F401  (registers every family)
