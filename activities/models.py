"""One input model per activity (and their results): what crosses the workflow boundary."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio import activity

from journeys.events import Event, personalization_event
from journeys.language.messages import MessageValue
from journeys.language.models import Branch, Channel, EngagementNode, IntelliNode
from journeys.store.outcomes import TakenPath
from journeys.store.versions import VERSIONS


class WalkEnd(BaseModel):
    """The entry's end, for the send after which the walk ends to record once it is settled:
    the funnel's end record rides on that send instead of costing a step of its own."""

    run_key: str = ""  # interpreter 3: the send's own run_key (see ``addressed``)
    nodes: list[str]  # the nodes the user went through, in order
    paths: list[TakenPath] = Field(default_factory=list)  # the IntelliNODE paths taken


class SendMessageInput(BaseModel):
    """Render a node's message for a user and deliver it once."""

    #: Fixed before the call, so that retries reuse it: ``message_key`` of the workflow, the
    #: entry's run key and the node. Interpreter 3 gives only ``run_key`` and leaves the key and
    #: the workflow id to the activity, which knows its workflow (``addressed``): history then
    #: holds neither once per send.
    idempotency_key: str = ""
    journey_id: str
    workflow_id: str = ""
    run_key: str = ""
    user_id: str
    node_id: str
    channel: Channel
    #: The node's message (its templates), or None: the node's message in the journey's
    #: ``version`` (journeys.versions), which the history then need not copy.
    message: dict[str, MessageValue] | None = None
    version: str | None = None
    event: Event | None = None
    #: Interpreter 4: the entry event by its id, kept with its receipt (``event_of`` reads it).
    kept_event: str | None = None
    ignore_caps: bool = False  # the journey's ignore_caps: transactional, not capped nor counted
    #: The journey's category is transactional: sent whatever the user's subscriptions (and
    #: not capped); else a user unsubscribed from the channel or ``topic`` is not sent it.
    transactional: bool = False
    topic: str | None = None
    track_opens: bool = True  # an email's opens and clicks are counted (journeys.links)
    track_clicks: bool = True
    held_out: bool = False  # the user is in the control group: recorded, never sent
    end: WalkEnd | None = None  # the walk ends after this send: record its end once settled


def message_key(workflow_id: str, run_key: str, node_id: str) -> str:
    """A message's idempotency key: one per workflow, entry and node."""
    return f"{workflow_id}:{run_key}:{node_id}"


def addressed(message: SendMessageInput) -> SendMessageInput:
    """``message`` with its idempotency key, workflow id and end's run key, which interpreter 3
    leaves to the activity: the running activity's workflow gives them (the same for each attempt
    and for the cancel or drop of the same send)."""
    if message.idempotency_key:
        return message
    workflow_id = activity.info().workflow_id
    if not workflow_id:  # (a standalone activity has none)
        raise ValueError(f"send of node '{message.node_id}' by run key, outside a workflow")
    end = message.end.model_copy(update={"run_key": message.run_key}) if message.end else None
    return message.model_copy(update={
        "workflow_id": workflow_id, "end": end,
        "idempotency_key": message_key(workflow_id, message.run_key, message.node_id)})


def node_of(input: SendMessageInput) -> EngagementNode:
    """The node ``input`` sends, in its journey's version (the history need not copy it)."""
    if input.version is None:
        raise ValueError(f"send {input.idempotency_key}: neither a message nor a version")
    node = VERSIONS.get(input.journey_id, input.version).node(input.node_id)
    if not isinstance(node, EngagementNode):
        raise ValueError(f"node '{input.node_id}' of journey '{input.journey_id}' sends nothing")
    return node


class KeptEventMissing(Exception):
    """An activity names an entry event that its store does not keep: a worker on another store
    than the router's. Retried (the message waits, visibly), never sent without it."""


def event_of(event: Event | None, kept_event: str | None, journey_id: str | None, user_id: str,
             read: Callable[[str, str, str], dict[str, Any] | None],
             kept: dict[str, Any] | None = None) -> Event | None:
    """An activity's personalization event: ``event``, or (interpreter 4) the entry event named
    ``kept_event`` that the journey's receipt keeps, read with ``read(journey, user, event id)``
    (``kept``: read already)."""
    if kept_event is None or journey_id is None:
        return event
    found = kept if kept is not None else read(journey_id, user_id, kept_event)
    if found is None:
        raise KeptEventMissing(
            f"the entry event '{kept_event}' of journey '{journey_id}' is not in this worker's store "
            "(does it use the router's JOURNEYS_DATABASE_URL?)")
    return Event.model_validate(found)


def message_event(message: SendMessageInput,
                  read: Callable[[str, str, str], dict[str, Any] | None],
                  kept: dict[str, Any] | None = None) -> Event | None:
    """The event ``message`` is personalized with: none on the online channels, whose messages
    never read the kept entry event (so a store without it cannot hold them up)."""
    if personalization_event(message.channel, message.kept_event) is None:
        return personalization_event(message.channel, message.event)
    return event_of(message.event, message.kept_event, message.journey_id, message.user_id,
                    read, kept)


class CancelMessageInput(BaseModel):
    """The user left while their message waited on its provider: it must not go out now."""

    message: SendMessageInput
    reason: str


#: Between an outbox reason's code and its detail: "not sent: missing value — 'first_name' in
#: subject". The outbox row keeps both; a SendResult (workflow history, ``status``, the UI) the
#: code only: a detail may name a profile's value, an address or the message's text.
DETAIL = " — "


def public_reason(reason: str | None) -> str | None:
    """The part of an outbox reason that history may hold: its code, without the detail."""
    return reason.split(DETAIL, 1)[0] if reason else reason


class SendResult(BaseModel):
    """What a send did. Small whatever the message: the content stays in the outbox.

    (Results become workflow history; one of over 2 MB would fail the workflow task for good.)
    ``reason`` is a code or class only (``public_reason``), never the vendor's words or data.
    """

    status: Literal["delivered", "skipped", "failed", "unreachable", "cancelled", "pending",
                    "capped", "dropped_quiet_hours", "held_out", "unknown", "kept", "unsubscribed"]
    reason: str | None = None
    content: dict[str, str] = Field(default_factory=dict)  # no longer filled; old histories have it
    digest: str | None = None  # sha256 of the rendered content (its first 16 hex digits), to compare sends
    size: int = 0  # the rendered content's bytes (UTF-8, all fields)
    duplicate: bool = False  # the key was recorded already: nothing was sent this time
    ended: bool = False  # the input's ``end`` is recorded (the workflow records no end of its own)
    variant: str | None = None  # the content variant sent (its node has variants), in history too


class AudiencePageInput(BaseModel):
    """Enter the next page of an audience journey's segment (ingestion.audiences)."""

    journey_id: str
    fired: datetime  # the occurrence: when its schedule fired (the start's identity, the segment's now)
    after: str | None = None  # the last user id of the pages before
    #: The occurrence's chain of runs (its first run id): with ``fired``, the start's identity, so
    #: that two occurrences fired in one second (Temporal keeps whole seconds) enter both. None:
    #: an occurrence begun before it was known (its users' entry ids hold the second alone).
    occurrence: str | None = None


class AudienceCounts(BaseModel):
    """What became of an audience occurrence's users so far."""

    matched: int = 0  # in the segment
    started: int = 0  # entered the journey
    already_in: int = 0  # in it already (or entered by this occurrence before a restart)
    skipped: int = 0  # not entered: its re-entry rule says no (they did it before)

    def plus(self, other: AudienceCounts) -> AudienceCounts:
        return AudienceCounts(**{name: getattr(self, name) + getattr(other, name)
                                 for name in type(self).model_fields})


class AudiencePage(BaseModel):
    """One page entered: its counts, its last user id (the cursor), and whether it was the last;
    ``problem``: why nothing was entered (the journey left the catalog, or is no audience)."""

    counts: AudienceCounts = Field(default_factory=AudienceCounts)
    last: str | None = None
    done: bool = True
    problem: str | None = None


class TriggerJourneyInput(BaseModel):
    """Enter the user into another journey with this event (ingestion.triggers routes it)."""

    journey_id: str  # the journey to enter
    user_id: str
    node_id: str  # the trigger_journey node
    event: Event | None = None
    kept_event: str | None = None  # interpreter 4: the event by id (``event_of``) ...
    kept_in: str | None = None  # ... kept by this journey's receipt (the triggering one)


class UpdateProfileInput(BaseModel):
    user_id: str
    node_id: str
    set: dict[str, str]
    event: Event | None = None
    kept_event: str | None = None  # interpreter 4: the event by id (``event_of``) ...
    kept_in: str | None = None  # ... kept by this journey's receipt


class UpdateProfileResult(BaseModel):
    """Which properties were written; their values stay in the profile (results stay small)."""

    written: dict[str, Any] = Field(default_factory=dict)  # no longer filled; old histories have it
    properties: list[str] = Field(default_factory=list)  # the properties written
    skipped: dict[str, str] = Field(default_factory=dict)  # property -> why not written


class ChooseBranchInput(BaseModel):
    user_id: str
    node_id: str
    branches: list[Branch]
    otherwise: str
    event: Event | None = None
    kept_event: str | None = None  # interpreter 4: the event by id (``event_of``) ...
    kept_in: str | None = None  # ... kept by this journey's receipt


class ChoosePathInput(BaseModel):
    journey_id: str
    node: IntelliNode
    run_key: str  # the entry: one choice per entry and node
    user_id: str
    held_out: bool = False  # the control group walks a path too, but does not teach the bandit
    at: datetime  # the workflow's time: conversions after it count for the path


class ResolveDateInput(BaseModel):
    """When does a date/time node fire? Timezone arithmetic lives here, not in the workflow."""

    user_id: str
    node_id: str
    now: datetime  # workflow time: the time-skipping server's clock, not the wall clock
    event: Event | None = None
    kept_event: str | None = None  # interpreter 4: the event by id (``event_of``) ...
    kept_in: str | None = None  # ... kept by this journey's receipt
    date_property: str | None = None
    profile_property: str | None = None
    offset: timedelta = timedelta(0)
    at: str | None = None
    #: The moment the wait had before its profile date changed: kept if the new value is not
    #: a date (an identify that sets "birthday": "n/a" does not end the journey).
    previous: datetime | None = None


class ResolveDateResult(BaseModel):
    moment: datetime | None = None
    reason: str | None = None  # why there is no moment (property missing or not a date)
