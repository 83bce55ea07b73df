"""CSV tables read the one way lablens reads them: every cell as text.

Sample, group, slide and label columns are identifiers, not numbers: ``007`` must stay ``007`` and ``NA`` a
sample name, not a missing value. Numeric columns are converted where they are used, by :func:`number`, so a
bad value is reported with its column and row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lablens.errors import LablensError


class TableError(LablensError, ValueError):
    """A CSV cannot be read, or a value in it is not what its column needs; ``reason`` is without the file name."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


def read_text_csv(path: str | Path) -> pd.DataFrame:
    """All columns as ``str``; empty cells are ``""`` (never NaN)."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise TableError(f"cannot read {path}: {exc}", str(exc)) from None


def number(value: str, column: str, where: str) -> float | None:
    """``value`` of ``column`` as a float, ``None`` when empty; :class:`TableError` naming ``where`` otherwise."""
    text = str(value).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise TableError(f"{where}: {column} {text!r} is not a number") from None
