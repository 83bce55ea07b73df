"""lablens: turn a laboratory's own microscopy images into a validated AI reader.

The Python API mirrors the command line: :func:`lablens.api.train`, :func:`lablens.api.evaluate`,
:func:`lablens.api.predict`, :func:`lablens.api.validate_data` and :func:`lablens.api.demo`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
