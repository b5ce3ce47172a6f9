"""IANA timezones by name, from data a user wrote (a journey's ``timezone``, a profile's).

``ZoneInfo(name)`` raises more than ZoneInfoNotFoundError: IsADirectoryError for a folder of
the database (``Europe``), OSError for a name too long, ValueError for a path; and it accepts
files of the machine that are no IANA zone (``localtime``). Every caller asks here instead.
"""

from __future__ import annotations

from functools import cache
from zoneinfo import ZoneInfo, available_timezones

#: Files a zoneinfo folder may hold that are no zone of the IANA database.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def _names() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def zone(name: object) -> ZoneInfo | None:
    """The IANA zone ``name`` (Europe/Paris, UTC), or None if it is not one."""
    if not isinstance(name, str) or name not in _names():
        return None
    try:
        return ZoneInfo(name)
    except (OSError, ValueError):  # ZoneInfoNotFoundError is a KeyError: not in _names() then
        return None
