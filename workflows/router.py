"""The client side of journeys: an event starts, wakes or ends its user's journey workflows.

Not workflow code (it runs in ``starter.py``, the demo and the benchmark): it holds the rules
for workflow ids, re-entry and search attributes in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from journeys.events import Event, Routed, listens_to, starts, starts_on_profile, workflow_id
from journeys.models import Journey
from workflows.journey import JourneyWorkflow
from workflows.models import JOURNEY_ID, JOURNEY_NODE, USER_ID, JourneyInput, JourneyState

REUSE = {"never": WorkflowIDReusePolicy.REJECT_DUPLICATE,
         "after_exit": WorkflowIDReusePolicy.ALLOW_DUPLICATE}


async def _is_running(handle: WorkflowHandle) -> bool:
    try:
        return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise


async def start_journey(client: Client, journey: Journey, user_id: str, event: Event | None,
                        task_queue: str, *, search_attributes: bool = True) -> Routed:
    """Signal-with-start the user's journey; the id-reuse policy encodes ``reentry``."""
    wid = workflow_id(journey.id, user_id)
    handle = client.get_workflow_handle(wid)
    running = await _is_running(handle)
    attributes = TypedSearchAttributes([
        SearchAttributePair(JOURNEY_ID, journey.id), SearchAttributePair(USER_ID, user_id),
        SearchAttributePair(JOURNEY_NODE, journey.entry)]) if search_attributes else None
    try:
        await client.start_workflow(
            JourneyWorkflow.run,
            JourneyInput(journey=journey, user_id=user_id, entry_event=event,
                         search_attributes=search_attributes),
            id=wid, task_queue=task_queue, id_reuse_policy=REUSE[journey.reentry],
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=attributes, static_summary=f"{journey.name}: user {user_id}",
            static_details=f"journey `{journey.id}`, entered at `{journey.entry}`",
            start_signal="event" if event else None, start_signal_args=[event] if event else [])
    except WorkflowAlreadyStartedError:
        return Routed(journey_id=journey.id, workflow_id=wid, action="not-reentered")
    action = "started" if not running else "signalled" if event else "running"
    return Routed(journey_id=journey.id, workflow_id=wid, action=action)


async def signal_journey(client: Client, journey: Journey, event: Event) -> Routed | None:
    """Pass an event to the user's running journey, if there is one."""
    wid = workflow_id(journey.id, event.user_id)
    try:
        await client.get_workflow_handle(wid).signal(JourneyWorkflow.event, event)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # no journey, or it has ended
            return None
        raise
    return Routed(journey_id=journey.id, workflow_id=wid, action="signalled")


async def route_event(client: Client, journeys: Sequence[Journey], event: Event, task_queue: str,
                      *, search_attributes: bool = True) -> list[Routed]:
    """Every journey this event touches: entries start, waits and exits are signalled."""
    routed: list[Routed] = []
    for journey in journeys:
        result = None
        if starts(journey, event):
            result = await start_journey(client, journey, event.user_id, event, task_queue,
                                         search_attributes=search_attributes)
        elif event.name in listens_to(journey):
            result = await signal_journey(client, journey, event)
        if result:
            routed.append(result)
    return routed


async def route_profile(client: Client, journeys: Sequence[Journey], user_id: str,
                        changed: Iterable[str], task_queue: str,
                        *, search_attributes: bool = True) -> list[Routed]:
    """Profile-date journeys (birthdays, renewals) start when their date property is set."""
    names = list(changed)
    return [await start_journey(client, journey, user_id, None, task_queue,
                                search_attributes=search_attributes)
            for journey in journeys if starts_on_profile(journey, names)]


class JourneyStatus(BaseModel):
    """One journey of a user, as ``starter.py status`` shows it."""

    journey_id: str
    workflow_id: str
    status: str  # running, completed, terminated ... (Temporal's word)
    outcome: str | None = None  # the journey's word: running, finished, exited
    current_node: str | None = None
    event_name: str | None = None
    event_id: str | None = None
    event_properties: dict[str, Any] = Field(default_factory=dict)
    path: list[str] = Field(default_factory=list)
    messages: int = 0
    exit_reason: str | None = None


async def journey_status(client: Client, journey: Journey, user_id: str) -> JourneyStatus | None:
    """The state of the user's latest run of ``journey``, or None if they never entered."""
    handle = client.get_workflow_handle_for(JourneyWorkflow.run, workflow_id(journey.id, user_id))
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    status = description.status.name.lower() if description.status else "unknown"
    row = JourneyStatus(journey_id=journey.id, workflow_id=handle.id, status=status,
                        current_node=description.typed_search_attributes.get(JOURNEY_NODE))
    state: JourneyState | None = None
    try:
        if description.status == WorkflowExecutionStatus.RUNNING:
            state = await handle.query(JourneyWorkflow.status, rpc_timeout=timedelta(seconds=5))
        elif description.status == WorkflowExecutionStatus.COMPLETED:
            state = await handle.result(rpc_timeout=timedelta(seconds=5))
    except (RPCError, WorkflowQueryFailedError, WorkflowFailureError):
        state = None  # no worker to answer the query: the search attributes still tell the node
    if state:
        event = state.event
        row = row.model_copy(update={
            "current_node": state.current_node, "path": state.path, "outcome": state.status,
            "messages": len(state.messages),
            "exit_reason": state.exit_reason, "event_name": event.name if event else None,
            "event_id": event.id if event else None,
            "event_properties": event.properties if event else {}})
    return row
