"""Model families. Importing this package registers every built-in estimator."""

from __future__ import annotations

from lablens.models import deep  # noqa: F401  (registers deep models)
