"""Events from the app, and which journeys they start, wake or end."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from journeys.language.channels import ONLINE_CHANNELS
from journeys.language.limits import MAX_EVENT_BYTES, LimitExceeded, check_properties
from journeys.language.models import (
    ActionNode,
    Channel,
    DateTimeNode,
    EngagementNode,
    InactionNode,
    Journey,
    Scalar,
)

T = TypeVar("T")


class Event(BaseModel):
    """Something a user did. ``id`` makes it idempotent: the same id is never counted twice."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    user_id: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)
    time: datetime

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)


def personalization_event(channel: Channel, event: T | None) -> T | None:
    """The event a message on ``channel`` is personalized with: none on the online channels.

    (They render in the app, where the journey's event is not available: the product page's rule.)
    """
    return None if channel in ONLINE_CHANNELS else event


def matches(where: Mapping[str, Scalar], properties: Mapping[str, Any]) -> bool:
    """Property equality filters: every ``where`` key must be present and equal."""
    return all(key in properties and properties[key] == value for key, value in where.items())


def starts(journey: Journey, event: Event) -> bool:
    """Does ``event`` make its user enter ``journey``?"""
    entry = journey.entry_node
    if isinstance(entry, ActionNode | InactionNode | DateTimeNode) and entry.event == event.name:
        return matches(getattr(entry, "where", {}), event.properties)
    return False


def starts_on_profile(journey: Journey, changed: Iterable[str]) -> bool:
    """Does setting these profile properties make the user enter (a profile-date entry)?"""
    entry = journey.entry_node
    return isinstance(entry, DateTimeNode) and entry.profile_property in set(changed)


def waits_on_profile(journey: Journey, changed: Iterable[str]) -> bool:
    """Does a running journey wait on one of these profile properties (a date that may move)?"""
    names = set(changed)
    return any(isinstance(node, DateTimeNode) and node.profile_property in names
               for node in journey.nodes)


#: The events of what a user did with a message (the first by a person of each message).
MESSAGE_OPENED, MESSAGE_CLICKED = "Message Opened", "Message Clicked"


def tracking_id(idempotency_key: str) -> str:
    """A message's id in its links and engagement events (``message_id``): its idempotency
    key's digest (the key names the user)."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def engagement_events(node: EngagementNode) -> dict[str, str]:
    """The events a node's ``on_engagement`` waits for, each with the path it takes."""
    engage = node.on_engagement
    if engage is None:
        return {}
    found = {MESSAGE_CLICKED: engage.clicked, MESSAGE_OPENED: engage.opened}
    return {name: target for name, target in found.items() if target is not None}


def listens_to(journey: Journey) -> frozenset[str]:
    """Events a running journey may wait on or exit on (it is signalled only for these)."""
    names: set[str] = set(journey.exit_when) | set(journey.goals)
    for node in journey.nodes:
        if isinstance(node, EngagementNode):
            names |= engagement_events(node).keys()
        if isinstance(node, InactionNode):
            names.add(node.not_event)
        if isinstance(node, ActionNode | DateTimeNode) and node.event and node.id != journey.entry:
            names.add(node.event)
    return frozenset(names)


def check_event(event: Event) -> None:
    """Refuse, at the door, an event whose properties no workflow could carry, or whose ids
    would break a line of output (or a terminal) wherever they are shown.

    Not a model validator: events already in running workflows' histories must keep decoding.
    """
    check_name(event.user_id, "user id")
    check_name(event.name, "event name")
    check_name(event.id, "event id")
    check_properties(event.properties, f"event '{event.name}': properties", MAX_EVENT_BYTES)


def check_name(value: str, what: str) -> None:
    """A user id, event name or event id: printable, no control characters or line breaks."""
    if not value:
        raise LimitExceeded(f"the {what} is empty")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        raise LimitExceeded(f"the {what} {value!r} has control characters or line breaks")


Action = Literal["started", "signalled", "running", "not-reentered", "duplicate", "failed"]
#: Why routing failed: the event itself ("request": sending it again changes nothing), a part
#: that a retry may find back ("unavailable": Temporal or the store down, slow or locked), or
#: anything else ("internal").
Problem = Literal["request", "unavailable", "internal"]


class Routed(BaseModel):
    """What one event did to one journey of its user."""

    journey_id: str
    workflow_id: str
    action: Action
    error: str | None = None  # why routing to this journey failed (action "failed")
    problem: Problem | None = None  # whose the failure is (action "failed")


#: Journey ids cannot contain "/" (see NodeId), so the first "/" after the journey id ends it:
#: (welcome, back-ada) and (welcome-back, ada) get different ids.
WORKFLOW_ID_PREFIX = "journey/"


def workflow_id(journey_id: str, user_id: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{journey_id}/{user_id}"


#: Task-queue priority keys (1 is served first): a password reset before an abandoned cart's push,
#: and both before a broadcast's users; the broadcast's own run last of all.
PRIORITY_TRANSACTIONAL, PRIORITY_EVENT, PRIORITY_AUDIENCE, PRIORITY_AUDIENCE_RUN = 1, 2, 4, 5


def priority_of(journey: Journey) -> int:
    """The priority key of ``journey``'s runs: its own ``priority``, else by kind."""
    if journey.priority is not None:
        return journey.priority
    if journey.transactional:
        return PRIORITY_TRANSACTIONAL
    return PRIORITY_AUDIENCE if journey.entry_node.type == "segment" else PRIORITY_EVENT


def fairness_key(name: str) -> str:
    """A fairness key (Temporal takes at most 64 bytes): the name, or its start and digest."""
    raw = name.encode()
    if len(raw) <= 64:
        return name
    return f"{raw[:40].decode(errors='ignore')}~{hashlib.sha256(raw).hexdigest()[:16]}"


def instance_id(journey_id: str, user_id: str, key: str | None = None) -> str:
    """The workflow id of a user's journey: ``journey/{j}/{u}``, or for a keyed journey's instance
    ``journey/{j}/{u}/{key}`` with the user and the key escaped (``%`` and ``/`` as ``%25`` and
    ``%2F``), so that no user or key holding a "/" can pass for another pair. Unkeyed ids stay
    as they always were (a journey's ids are all keyed or all unkeyed: see ``entry_key``)."""
    if key is None:
        return workflow_id(journey_id, user_id)
    return f"{WORKFLOW_ID_PREFIX}{journey_id}/{_escape(user_id)}/{_escape(key)}"


def key_of_instance(journey_id: str, user_id: str, wid: str) -> str | None:
    """The key of a keyed instance id of this journey and user (None: not one)."""
    prefix = f"{WORKFLOW_ID_PREFIX}{journey_id}/{_escape(user_id)}/"
    rest = wid.removeprefix(prefix)
    if rest == wid or not rest or "/" in rest:
        return None
    return rest.replace("%2F", "/").replace("%25", "%")


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("/", "%2F")


class BadKey(ValueError):
    """An event's entry key property cannot name an instance (not a scalar, too long ...)."""


#: How long a key value may be (as text), as a user id.
MAX_KEY_LENGTH = 200


def entry_key(journey: Journey, event: Event) -> str | None:
    """The value of ``journey``'s ``entry_key`` in ``event`` as text, None when the event does
    not carry it (absent or null): such an event is for every instance of its user.

    ``2``, ``2.0`` and ``"2"`` are one key (a number is written as the shortest text of its
    value; a text is kept as it is). A list, an object, an empty or overlong text, or one with
    control characters names no instance: :class:`BadKey`.
    """
    name = journey.entry_key
    if name is None:
        return None
    value = event.properties.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and value.is_integer():  # 2.0 is the number 2
        text = str(int(value))
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        raise BadKey(f"properties.{name} is {type(value).__name__}: a key is a text or a number")
    if not text or len(text) > MAX_KEY_LENGTH:
        raise BadKey(f"properties.{name} must be 1 to {MAX_KEY_LENGTH} characters")
    try:
        check_name(text, f"key properties.{name}")
    except LimitExceeded as exc:
        raise BadKey(str(exc)) from None
    return text


def legacy_workflow_id(journey_id: str, user_id: str) -> str:
    """The id release 0.1 gave a journey: ambiguous, so only used with its search attributes."""
    return f"journey-{journey_id}-{user_id}"
