"""The journey workflow's input, state and search attributes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from temporalio.common import SearchAttributeKey

from journeys.events import Event
from journeys.language.models import Journey, Scalar
from journeys.store.versions import VERSIONS

JOURNEY_ID = SearchAttributeKey.for_keyword("JourneyId")
USER_ID = SearchAttributeKey.for_keyword("UserId")
JOURNEY_NODE = SearchAttributeKey.for_keyword("JourneyNode")
#: The entry key's value of a keyed journey's instance (set at its start, only on keyed ones).
JOURNEY_KEY = SearchAttributeKey.for_keyword("JourneyKey")
SEARCH_ATTRIBUTES = (JOURNEY_ID, USER_ID, JOURNEY_NODE, JOURNEY_KEY)


class SentMessage(BaseModel):
    node_id: str
    channel: str
    status: str
    event_name: str | None = None
    event_id: str | None = None
    reason: str | None = None


class JourneyState(BaseModel):
    """Where a user is in a journey: what ``status`` shows and the query returns."""

    status: Literal["running", "finished", "exited"] = "running"
    current_node: str | None = None
    event: Event | None = None  # the personalization event, replaced at each action node
    path: list[str] = Field(default_factory=list)
    messages: list[SentMessage] = Field(default_factory=list)
    goals_reached: list[str] = Field(default_factory=list)
    exit_reason: str | None = None
    next_wake: datetime | None = None
    entered_at: datetime | None = None
    run_key: str = ""  # made once per entry; part of every idempotency key
    seen_event_ids: list[str] = Field(default_factory=list)  # the latest ids, for deduplication
    waiting_for: str | None = None  # the event the current wait listens for ...
    waiting_where: dict[str, Scalar] = Field(default_factory=dict)  # ... and its filters
    waiting_any: list[str] = Field(default_factory=list)  # a wait for one of several events: all
    held: str | None = None  # why the current message waits: "quiet hours until 08:00 Europe/Paris"
    converted: str | None = None  # the goal event that converted this entry (the first one) ...
    converted_node: str | None = None  # ... the node the user was at ...
    converted_at: datetime | None = None
    conversion_recorded: bool = False  # ... and whether the store has it
    held_out: bool = False  # in the journey's control group: its sends are recorded, not sent


class JourneyInput(BaseModel):
    """A user's entry into a journey. The definition is pinned: users finish on this version,
    given whole (runs entered before interpreter 2) or by its id and version (journeys.versions)."""

    journey: Journey | None = None
    journey_id: str | None = None
    version: str | None = None
    user_id: str
    entry_event: Event | None = None
    search_attributes: bool = True  # upsert JourneyNode as the user moves
    resume_node: str | None = None  # set by continue-as-new
    resume_mid_wait: bool = False  # the run went on as new in the middle of resume_node's wait
    carried: JourneyState | None = None
    send_timeout: float | None = None  # JOURNEYS_SEND_TIMEOUT at entry (None: 30 s, as before)
    entry_key: str | None = None  # a keyed journey's instance: its key's value (cart_id's)
    #: The interpreter's version, fixed at entry and carried on through continue-as-new. 2: every
    #: change made behind ``workflow.patched`` before it holds without asking (no marker and no
    #: TemporalChangeVersion upsert per run), and the walk's end rides on a send that ends it.
    #: Runs entered as 1 replay and go on as 1. 3: a send gives its run key, not its idempotency
    #: key and workflow id (the activity makes them), and the result leaves out the seen event ids.
    #: 4: activities name the entry event its receipt keeps (``kept_event``) instead of copying it,
    #: and the result leaves out the event (the input, or the signal that brought it, holds it).
    interpreter: int = 1
    #: The entry event's id, when its claim in the router's store keeps it (interpreter 4).
    kept_event: str | None = None


#: What new entries run (the router sets it).
INTERPRETER = 4


def journey_of(input: JourneyInput) -> Journey:
    """The definition ``input`` pins: its own, or its version's (LookupError if unknown here)."""
    if input.journey is not None:
        return input.journey
    if input.journey_id is None or input.version is None:
        raise ValueError("a journey's input names no journey: neither a definition nor a version")
    return VERSIONS.get(input.journey_id, input.version)


def details(journey_name: str, user_id: str, state: JourneyState) -> str:
    """The workflow's current details in the Temporal UI (Markdown): where the user is, and why."""
    event = f"{state.event.name} ({state.event.id})" if state.event else "none"
    wake = f"{state.next_wake:%Y-%m-%d %H:%M:%S} UTC" if state.next_wake else "-"
    status = state.exit_reason or state.status
    held = f"\n- message held: {state.held}" if state.held else ""
    return (f"**{journey_name}** for user `{user_id}`\n\n"
            f"- node: `{state.current_node}`\n- personalization event: {event}\n"
            f"- next wake-up: {wake}\n- status: {status}{held}")
