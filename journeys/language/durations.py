"""Durations as journey authors write them: ``90s``, ``15m``, ``15h``, ``2d``, ``-1d``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# ASCII digits only: "٣d" is not three days (\d would match every script's digits).
_PATTERN = re.compile(r"^\s*([+-]?)([0-9]+)\s*([smhd])\s*$")
DURATION_PATTERN = r"^[+-]?[0-9]+[smhd]$"
#: The longest duration anywhere (a journey's delays, windows, offsets, timeouts; a cap's
#: window): about 100 years. Any moment it is added to or taken from stays within datetime's
#: years 1 to 9999, so no send or wait can fail with OverflowError later.
MAX_DURATION = timedelta(days=36_500)


def parse_duration(value: Any) -> timedelta:
    """Parse ``15h`` into a timedelta; a timedelta passes through unchanged."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f"a duration is a string such as '90s', '15m', '15h' or '2d', not {value!r}")
    match = _PATTERN.match(value)
    if not match:
        raise ValueError(
            f"'{value}' is not a duration: write a number and a unit (s, m, h, d), e.g. '15h'")
    sign, amount, unit = match.groups()
    seconds = int(amount) * _UNITS[unit]
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"'{value.strip()}' is too long a duration: at most "
                         f"{format_duration(MAX_DURATION)} (about 100 years)")
    return timedelta(seconds=-seconds if sign == "-" else seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of a timedelta: 1 day is ``1d``, 90 minutes ``90m``."""
    seconds = int(value.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{sign}{seconds // _UNITS[unit]}{unit}"
    return f"{sign}{seconds}s"


def _non_negative(value: Any) -> timedelta:
    parsed = parse_duration(value)
    if parsed < timedelta(0):
        raise ValueError(f"'{value}' is negative: only an offset may be negative")
    return parsed


_schema = WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["15h"]})
_serializer = PlainSerializer(format_duration, return_type=str)

#: A non-negative duration (delays, windows, timeouts).
Duration = Annotated[timedelta, BeforeValidator(_non_negative), _serializer, _schema]
#: A signed duration (date/time offsets such as ``-1d``).
Offset = Annotated[timedelta, BeforeValidator(parse_duration), _serializer, _schema]
