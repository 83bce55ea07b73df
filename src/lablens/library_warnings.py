"""Keep third-party warnings off the console of a lablens command.

scikit-learn warns about situations lablens already reports in its own words (a class with fewer groups
than folds, a metric undefined for an absent class); its messages name arguments the user never wrote.
Within :func:`library_warnings_to_log` such warnings go to the ``lablens.library`` logger (shown with
``LABLENS_DEBUG=1``) instead of stderr; lablens's own warnings and those of other code are shown as usual.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

LIBRARIES = ("sklearn", "ray")  # top-level packages whose warnings are logged, not printed
log = logging.getLogger("lablens.library")


def from_library(category: type[Warning], filename: str) -> bool:
    """Whether a warning was raised inside (or is a warning class of) one of :data:`LIBRARIES`."""
    module = getattr(category, "__module__", "") or ""
    parts = filename.replace("\\", "/").split("/")
    return any(module == lib or module.startswith(lib + ".") or lib in parts for lib in LIBRARIES)


@contextmanager
def library_warnings_to_log() -> Iterator[None]:
    """Route library warnings to the log for the duration of the block (restored afterwards)."""
    with warnings.catch_warnings():
        shown = warnings.showwarning
        debug = bool(os.environ.get("LABLENS_DEBUG"))

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> Any:
            if from_library(category, filename) and not debug:
                log.info("%s:%s: %s: %s", filename, lineno, category.__name__, message)
                return None
            return shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield
