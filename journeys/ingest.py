"""Events from a file: one JSON object a line, in our field names or Segment's.

    {"user_id": "ada", "name": "Added To Cart", "properties": {...}, "id": "e-1", "profile": {...}}
    {"userId": "ada", "event": "Added To Cart", "properties": {...}, "messageId": "e-1", "traits": {...}}

A line without an id gets one made from its content, so a file ingested twice is the same
events twice: nobody enters twice and nothing is sent twice (the event-id guarantee).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from journeys.events import Event, check_event
from journeys.inputs import strict_json
from journeys.limits import MAX_PROFILE_BYTES, LimitExceeded, check_properties

#: Our field, then the names Segment's tracking API gives it.
_FIELDS = {"user_id": ("user_id", "userId"), "name": ("name", "event"),
           "properties": ("properties",), "id": ("id", "messageId"),
           "time": ("time", "timestamp"), "profile": ("profile", "traits")}


class BadLine(ValueError):
    """A line that is no event: its number and why."""

    def __init__(self, number: int, reason: str) -> None:
        super().__init__(f"line {number}: {reason}")
        self.number, self.reason = number, reason


@dataclass(frozen=True)
class Line:
    """One event of the file, and the profile properties that come with it."""

    number: int
    event: Event
    profile: dict[str, Any] = field(default_factory=dict)


def _field(raw: dict[str, Any], name: str) -> Any:
    return next((raw[key] for key in _FIELDS[name] if key in raw), None)


def parse_line(text: str, number: int) -> Line | None:
    """The event on line ``number`` (None for a blank line); raises :class:`BadLine`."""
    if not text.strip():
        return None
    try:
        raw = strict_json(text)
    except RecursionError:
        raise BadLine(number, "nested too deeply") from None
    except ValueError as exc:
        raise BadLine(number, f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BadLine(number, "not a JSON object")
    return parse_item(raw, number)


def parse_item(raw: dict[str, Any], number: int) -> Line:
    """The event of one JSON object (a line of a file, an item of an HTTP batch), in our field
    names or Segment's; raises :class:`BadLine`. Without an id, it gets one from its content."""
    event_id = _field(raw, "id")
    if event_id is None:  # the same line, the same id: a file ingested twice is deduplicated
        canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        event_id = "ingest-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
    profile = _field(raw, "profile") or {}
    try:
        event = Event(id=str(event_id), name=_field(raw, "name") or "",
                      user_id=str(_field(raw, "user_id") or ""), properties=_field(raw, "properties") or {},
                      time=_field(raw, "time") or datetime.now(UTC))
        check_event(event)
        if not isinstance(profile, dict):
            raise BadLine(number, "profile: not a JSON object")
        check_properties(profile, "profile", MAX_PROFILE_BYTES)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BadLine(number, fields) from None
    except LimitExceeded as exc:
        raise BadLine(number, str(exc)) from None
    return Line(number, event, profile)
