"""Names people give (samples, users): plain text of a bounded length, never control characters.

A NUL byte is refused by PostgreSQL (a 500 there, stored verbatim by SQLite), and line breaks, escapes and other
control characters forge lines in exports, audit listings and the page; they are refused with one line naming
the field and the character's position.
"""

from __future__ import annotations

import unicodedata

from lablens.errors import SettingError

#: format characters that spell names in Persian, Hindi and other scripts (zero-width non-joiner and joiner)
JOINERS = {"\u200c", "\u200d"}


def checked_name(value: str, what: str, max_len: int) -> str:
    """``value`` stripped, when it is 1 to ``max_len`` characters of plain text; a ValueError naming ``what``."""
    text = value.strip()
    if not text or len(text) > max_len:
        raise SettingError(f"{what}: give 1 to {max_len} characters")
    for i, ch in enumerate(text):
        if ch in JOINERS:
            continue
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise SettingError(
                f"{what}: control or invisible character U+{ord(ch):04X} at position {i + 1} is not allowed"
            )
    return text
