"""Synthetic images for rare classes: how close to the real ones they are, and whether they copy them.

Importing the package registers every generator family (:data:`lablens.synth.registry.GENERATORS`).
"""

from __future__ import annotations

from lablens.synth import diffusion, gan  # noqa: F401  (their decorators fill the registry)
