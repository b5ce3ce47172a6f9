"""Whole numbers from what people type (settings, command-line options, journey files).

``str.isdigit`` and ``int`` accept every script's digits (``"٣".isdigit()``, ``int("٣") == 3``,
and ``"²".isdigit()`` though ``int("²")`` fails), and regular expressions' ``\\d`` matches them
too: a setting such as ``push=٣/1d`` would pass as 3. Only ASCII digits are numbers here.
"""

from __future__ import annotations

import re

#: ASCII digits only (``\\d`` without re.ASCII matches every script's).
DIGITS = "[0-9]"
_WHOLE = re.compile(r"[0-9]+")


def whole_number(text: str) -> int | None:
    """``text`` (spaces around it allowed) as a non-negative whole number in ASCII digits, else
    None: ``"٣"``, ``"²"``, ``"+3"``, ``"3_000"`` and ``""`` are not numbers."""
    text = text.strip()
    return int(text) if _WHOLE.fullmatch(text) else None
