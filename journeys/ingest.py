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

from journeys.events import Event, check_event, check_name
from journeys.inputs import BadText, check_text, strict_json
from journeys.language.limits import MAX_PROFILE_BYTES, LimitExceeded, check_properties

#: Our field, then the names Segment's tracking API gives it.
_FIELDS = {"user_id": ("user_id", "userId"), "name": ("name", "event"),
           "properties": ("properties",), "id": ("id", "messageId"),
           "time": ("time", "timestamp"), "profile": ("profile", "traits")}


#: The longest user id (``Event.user_id``): an identify holds to it too.
USER_ID_LENGTH = 200


#: Segment calls that no journey routes: accepted and left alone (a batch or file of them is
#: not refused for them), as is an item with only an ``anonymousId``.
SKIPPED_TYPES = ("page", "screen", "alias", "group")


def skip_reason(raw: dict[str, Any]) -> str | None:
    """Why a Segment call is accepted and left alone, or None if it is for the journeys."""
    kind = raw.get("type")
    if kind in SKIPPED_TYPES:
        return f"type {kind!r}: no journey routes it"
    if raw.get("userId", raw.get("user_id")) is None and raw.get("anonymousId") is not None:
        return "anonymousId without userId: journeys follow identified users"
    return None


class SkippedLine(Exception):
    """A line that is a Segment call no journey routes (:func:`skip_reason`)."""

    def __init__(self, number: int, reason: str) -> None:
        super().__init__(f"line {number}: {reason}")
        self.number, self.reason = number, reason


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


def id_text(value: Any, what: str) -> str:
    """An id as Segment's spec has it: a string, or a number as its text (``42``, and ``2.0`` as
    ``"2"``); a bool, list, object, or a number with a fraction is refused (LimitExceeded), as
    is an id of white space only."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if not isinstance(value, str):
        kind = "a number with a fraction" if isinstance(value, float) else _kind(value)
        raise LimitExceeded(f"{what}: not a string or a whole number ({kind})")
    if value and not value.strip():
        raise LimitExceeded(f"{what}: white space only")
    return value


def object_field(value: Any, what: str) -> dict[str, Any]:
    """``properties``, ``traits`` or ``profile``: a JSON object; absent or null is ``{}``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LimitExceeded(f"{what}: not a JSON object ({_kind(value)})")
    return value


def _kind(value: Any) -> str:
    names = {bool: "a boolean", list: "a list", dict: "an object", str: "a string",
             int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def parse_line(text: str | bytes, number: int) -> Line | None:
    """The event on line ``number`` (None for a blank line); raises :class:`BadLine`, or
    :class:`SkippedLine` for a page view, screen, alias, group or anonymous-only call. Bytes must
    be UTF-8 (a BOM before the first line is the reader's to drop)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            at = exc.start
            raise BadLine(number, f"not UTF-8: byte 0x{text[at]:02x} at byte {at + 1}") from None
    if not text.strip():
        return None
    try:
        raw = strict_json(text, check=False)
    except RecursionError:
        raise BadLine(number, "nested too deeply") from None
    except ValueError as exc:
        raise BadLine(number, f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BadLine(number, "not a JSON object")
    if (why := skip_reason(raw)) is not None:
        raise SkippedLine(number, why)
    return parse_item(raw, number)


def parse_item(raw: dict[str, Any], number: int) -> Line:
    """The event of one JSON object (a line of a file, an item of an HTTP batch), in our field
    names or Segment's; raises :class:`BadLine`. Without an id, it gets one from its content."""
    try:
        check_text(raw)
        event_id = _field(raw, "id")
        if event_id is None:  # the same line, the same id: a file ingested twice is deduplicated
            canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            event_id = "ingest-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
        name = _field(raw, "name")
        if name is not None and not isinstance(name, str):
            raise LimitExceeded(f"event: not a string ({_kind(name)})")
        user = _field(raw, "user_id")
        profile = object_field(_field(raw, "profile"), "profile")
        event = Event(id=id_text(event_id, "messageId"), name=name or "",
                      user_id="" if user is None else id_text(user, "userId"),
                      properties=object_field(_field(raw, "properties"), "properties"),
                      time=_field(raw, "time") or datetime.now(UTC))
        check_event(event)
        check_properties(profile, "profile", MAX_PROFILE_BYTES)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BadLine(number, fields) from None
    except (LimitExceeded, BadText) as exc:
        raise BadLine(number, str(exc)) from None
    return Line(number, event, profile)


def parse_identify(raw: dict[str, Any], number: int) -> tuple[str, dict[str, Any]]:
    """The user and traits of an identify call (Segment's), as :func:`parse_item` reads a track;
    raises :class:`BadLine`."""
    try:
        check_text(raw)
        user = _field(raw, "user_id")
        if user is None:
            raise LimitExceeded("userId: missing")
        user = id_text(user, "userId")
        check_name(user, "user id")
        if len(user) > USER_ID_LENGTH:
            raise LimitExceeded(f"userId: over {USER_ID_LENGTH} characters")
        traits = object_field(_field(raw, "profile"), "traits")
        check_properties(traits, "traits", MAX_PROFILE_BYTES)
    except (LimitExceeded, BadText) as exc:
        raise BadLine(number, str(exc)) from None
    return user, traits
