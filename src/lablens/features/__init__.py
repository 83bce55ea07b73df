"""Feature extractors (handcrafted and deep), registered by name and combined by spec strings.

Importing the package registers every built-in extractor (:data:`lablens.features.registry.EXTRACTORS`).
"""

from __future__ import annotations

from lablens.features import deep, handcrafted, quality  # noqa: F401  (their decorators fill the registry)
