"""Model families. Each family module registers its names when imported; :mod:`lablens.models.registry`
declares which module registers which name, so that a name is looked up by importing its module alone."""

from __future__ import annotations
