"""Where a user is in each journey, for ``starter.py status``: one user's journeys, and only theirs.

Client side, like the router. Each journey is described and queried at once, in parallel; with
no worker to answer a query, the search attributes and the outbox still tell what happened.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistoryEventFilterType,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError

from ingestion import retired
from ingestion.keyed import instances
from ingestion.legacy import belongs_to, describe
from journeys.events import key_of_instance, legacy_workflow_id, workflow_id
from journeys.inputs import described, printable
from journeys.language.models import Journey
from journeys.store.database import Store
from journeys.validation.catalog import Catalog
from workflows.journey import JourneyWorkflow
from workflows.models import JOURNEY_ID, JOURNEY_KEY, JOURNEY_NODE, USER_ID, JourneyState

#: How long a query may wait for a worker: it is only waited on when one polls the queue.
QUERY_TIMEOUT = timedelta(seconds=3)


class OutboxEntry(BaseModel):
    node_id: str
    channel: str
    status: str
    reason: str | None = None


class JourneyStatus(BaseModel):
    """One journey of a user, as ``starter.py status`` shows it."""

    journey_id: str
    workflow_id: str
    key: str | None = None  # a keyed journey's instance: its entry_key's value
    status: str  # running, completed, terminated ... (Temporal's word)
    outcome: str | None = None  # the journey's word: running, finished, exited
    current_node: str | None = None
    event_name: str | None = None
    event_id: str | None = None
    event_properties: dict[str, Any] = Field(default_factory=dict)
    path: list[str] = Field(default_factory=list)
    messages: int = 0
    exit_reason: str | None = None  # the journey's, or Temporal's (terminated, failed)
    converted: str | None = None  # the goal event that converted this entry
    held_out: bool = False  # in the journey's control group
    held: str | None = None  # why the current message waits (quiet hours until ...)
    note: str | None = None  # why the journey's own state is not shown (no worker answered)
    warning: str | None = None  # the journey left the catalog: why, naming its file
    started_at: datetime | None = None  # this run's start (the user's latest entry)
    run_key: str | None = None  # the entry's key, part of its messages' idempotency keys
    outbox: list[OutboxEntry] = Field(default_factory=list)  # this entry's messages


async def user_status(client: Client, journeys: Sequence[Journey], user_id: str, task_queue: str,
                      *, store: Store | None = None, legacy_ids: bool = False,
                      catalog: Catalog | None = None) -> list[JourneyStatus]:
    """Every journey ``user_id`` is or was in (latest run of each), in catalog order.

    With ``catalog`` (the commands pass the one they read), also the user's journeys that are
    not in it any more (renamed, given another id, broken: found by the store's entries and by
    visibility, not by their file), after the others, each with a warning that says why.
    """
    worker = await has_worker(client, task_queue)
    found = await asyncio.gather(*(
        _journey_status(client, journey, user_id, worker, legacy_ids, store) for journey in journeys))
    rows = [row for rows in found for row in rows]
    if catalog is not None:
        rows += await _retired_status(client, catalog, user_id, worker, store)
    if store:
        rows = [_with_outbox(row, store, user_id) for row in rows]
    return rows


async def has_worker(client: Client, task_queue: str) -> bool:
    """Does any worker poll the journeys' task queue? (Else a query waits in vain.)"""
    try:
        response = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
    except RPCError:
        return True  # cannot tell: let the query try
    return bool(response.pollers)


async def _journey_status(client: Client, journey: Journey, user_id: str, worker: bool,
                          legacy_ids: bool, store: Store | None) -> list[JourneyStatus]:
    if journey.entry_key is not None:  # each instance, with its key
        return await _keyed_status(client, journey, user_id, worker, store)
    ids = [workflow_id(journey.id, user_id)]
    if legacy_ids:
        ids.append(legacy_workflow_id(journey.id, user_id))
    rows = []
    for wid in ids:
        handle = client.get_workflow_handle_for(JourneyWorkflow.run, wid)
        description = await describe(handle)
        if description is None or not _is_users(description, journey, user_id, legacy=wid != ids[0]):
            continue
        rows.append(await _status_of(handle, description, journey.id, worker))
    return rows


async def _keyed_status(client: Client, journey: Journey, user_id: str, worker: bool,
                        store: Store | None) -> list[JourneyStatus]:
    """Every instance of a keyed journey the user entered, first entered first: from the
    store's entries (where the router records each start), else from visibility."""
    if store is not None:
        ids = await asyncio.to_thread(instances, store, journey, user_id)
    else:
        ids = await _visible_instances(client, journey, user_id)

    async def one(wid: str) -> JourneyStatus | None:
        handle = client.get_workflow_handle_for(JourneyWorkflow.run, wid)
        description = await describe(handle)
        if description is None:
            return None
        row = await _status_of(handle, description, journey.id, worker)
        return row.model_copy(update={"key": key_of_instance(journey.id, user_id, wid)})

    return [row for row in await asyncio.gather(*(one(wid) for wid in ids)) if row is not None]


async def _retired_status(client: Client, catalog: Catalog, user_id: str, worker: bool,
                          store: Store | None) -> list[JourneyStatus]:
    """The user's runs of journeys that left ``catalog``, each with why (naming the file)."""
    known = {journey.id for journey in catalog.journeys}
    runs: set[tuple[str, str]] = set()
    if store is not None:  # exact and at once: the router records every start
        gone = await asyncio.to_thread(retired.learn, store, known)
        runs |= set(await asyncio.to_thread(retired.runs_of, store, user_id, gone))
    runs |= await _visible_elsewhere(client, user_id, known)

    async def one(journey_id: str, wid: str) -> JourneyStatus | None:
        handle = client.get_workflow_handle_for(JourneyWorkflow.run, wid)
        description = await describe(handle)
        if description is None or description.typed_search_attributes.get(USER_ID) not in (None, user_id):
            return None
        row = await _status_of(handle, description, journey_id, worker)
        return row.model_copy(update={"key": description.typed_search_attributes.get(JOURNEY_KEY),
                                      "warning": catalog.why_not(journey_id)})

    found = await asyncio.gather(*(one(j, wid) for j, wid in sorted(runs)))
    return [row for row in found if row is not None]


async def _visible_elsewhere(client: Client, user_id: str, known: set[str]) -> set[tuple[str, str]]:
    """(journey id, workflow id) of the user's journeys that visibility knows and the catalog
    does not (none where the server has no visibility queries)."""
    found = set()
    try:
        async for execution in client.list_workflows(
                f'WorkflowType = "JourneyWorkflow" AND UserId = "{_quoted(user_id)}"'):
            journey_id = execution.typed_search_attributes.get(JOURNEY_ID)
            if journey_id is not None and journey_id not in known:
                found.add((journey_id, execution.id))
    except RPCError:
        return set()
    return found


def _quoted(value: str) -> str:
    """A value inside a visibility query's double quotes (as ``operate.listing.quoted``)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


async def _visible_instances(client: Client, journey: Journey, user_id: str) -> list[str]:
    """The user's keyed instances by their search attributes (eventually consistent; none
    where the server has no visibility queries)."""
    quoted = user_id.replace("\\", "\\\\").replace('"', '\\"')
    found: list[tuple[datetime, str]] = []
    try:
        async for execution in client.list_workflows(
                f'JourneyId = "{journey.id}" AND UserId = "{quoted}"'):
            if key_of_instance(journey.id, user_id, execution.id) is not None:
                found.append((execution.start_time, execution.id))
    except RPCError:
        return []
    return list(dict.fromkeys(wid for _, wid in sorted(found)))


def _is_users(description: WorkflowExecutionDescription, journey: Journey, user_id: str,
              *, legacy: bool) -> bool:
    """Only this user's journeys: a legacy id proves nothing without its search attributes."""
    if legacy:
        return belongs_to(description, journey.id, user_id)
    owner = description.typed_search_attributes.get(USER_ID)
    return owner is None or owner == user_id


async def _status_of(handle: WorkflowHandle[JourneyWorkflow, JourneyState],
                     description: WorkflowExecutionDescription, journey_id: str,
                     worker: bool) -> JourneyStatus:
    status = description.status.name.lower() if description.status else "unknown"
    row = JourneyStatus(journey_id=journey_id, workflow_id=handle.id, status=status,
                        current_node=description.typed_search_attributes.get(JOURNEY_NODE),
                        started_at=description.start_time)
    state: JourneyState | None = None
    if description.status == WorkflowExecutionStatus.RUNNING:
        if not worker:
            return row.model_copy(update={"note": "no worker answered: the node is the last one "
                                                  "the search attributes recorded"})
        try:
            state = await handle.query(JourneyWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
        except (RPCError, WorkflowQueryFailedError) as exc:
            return row.model_copy(update={"note": f"no worker answered the query ({described(exc)})"})
    elif description.status == WorkflowExecutionStatus.COMPLETED:
        # The query replays the closed run: its whole state, where the result (interpreter 3)
        # leaves out the event's properties. Without a worker, the result.
        try:
            state = await handle.query(JourneyWorkflow.status, rpc_timeout=QUERY_TIMEOUT) if worker else None
        except (RPCError, WorkflowQueryFailedError):
            state = None
        try:
            state = state or await handle.result(rpc_timeout=QUERY_TIMEOUT)
        except (RPCError, WorkflowFailureError):
            state = None
    else:  # terminated, failed, timed out, cancelled: Temporal's reason is the exit reason
        return row.model_copy(update={"exit_reason": await _close_reason(handle)})
    if state is None:
        return row
    event = state.event
    # A finished run's result (interpreter 4) leaves its event out: its last message names it.
    named = next((m for m in reversed(state.messages) if m.event_id), None) if event is None else None
    return row.model_copy(update={
        "current_node": state.current_node, "path": state.path, "outcome": state.status,
        "messages": len(state.messages), "exit_reason": state.exit_reason, "held": state.held,
        "event_name": event.name if event else named.event_name if named else None,
        "event_id": event.id if event else named.event_id if named else None,
        "event_properties": event.properties if event else {}, "run_key": state.run_key or None,
        "converted": state.converted, "held_out": state.held_out})


async def _close_reason(handle: WorkflowHandle) -> str | None:
    """Why Temporal closed the workflow: the termination reason or the failure."""
    async for event in handle.fetch_history_events(
            event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT):
        if event.HasField("workflow_execution_terminated_event_attributes"):
            reason = event.workflow_execution_terminated_event_attributes.reason
            return f"terminated: {reason or 'no reason given'}"
        if event.HasField("workflow_execution_failed_event_attributes"):
            return f"failed: {event.workflow_execution_failed_event_attributes.failure.message}"
        if event.HasField("workflow_execution_timed_out_event_attributes"):
            return "timed out (workflow run timeout)"
        if event.HasField("workflow_execution_canceled_event_attributes"):
            return "cancelled"
    return None


def _with_outbox(row: JourneyStatus, store: Store, user_id: str) -> JourneyStatus:
    """The journey's messages as the outbox recorded them: no worker needed."""
    rows = store.outbox_list(user_id=user_id, workflow_id=row.workflow_id)
    if row.run_key:  # this entry's, not those of earlier entries (re-entry keeps the id)
        rows = [r for r in rows if r.idempotency_key.startswith(f"{row.workflow_id}:{row.run_key}:")]
    elif row.started_at:
        rows = [r for r in rows if r.created_at is None or r.created_at >= row.started_at]
    entries = [OutboxEntry(node_id=r.node_id, channel=r.channel, status=r.status, reason=r.reason)
               for r in rows]
    update: dict[str, Any] = {"outbox": entries, "messages": max(row.messages, len(entries))}
    if row.event_id and not row.event_properties:  # the entry event: its receipt keeps them
        kept = store.kept_event(row.journey_id, user_id, row.event_id)
        update["event_properties"] = (kept or {}).get("properties") or {}
    return row.model_copy(update=update)


#: Counts asked of visibility at once by ``waiting_now`` (one per wait node: a journey may have
#: thousands, which one after the other outlasted any deadline).
COUNTS_AT_ONCE = 16


def wait_nodes(journey: Journey) -> list[str]:
    """The nodes users wait at (and the entry): those ``waiting_now`` counts."""
    return [node.id for node in journey.nodes
            if node.id == journey.entry or node.type in {"action", "inaction", "date_time", "delay"}]


async def waiting_now(client: Client, journey: Journey) -> dict[str, int] | None:
    """How many users wait at each node of ``journey`` now (visibility: JourneyNode of the
    running ones); None if the server cannot count (the time-skipping test server)."""
    gate = asyncio.Semaphore(COUNTS_AT_ONCE)

    async def count(node_id: str) -> int:
        async with gate:
            found = await client.count_workflows(
                f'JourneyId = "{journey.id}" AND ExecutionStatus = "Running" '
                f'AND JourneyNode = "{node_id}"')
            return found.count

    nodes = wait_nodes(journey)
    try:
        return dict(zip(nodes, await asyncio.gather(*(count(n) for n in nodes)), strict=True))
    except RPCError:
        return None


def format_status(row: JourneyStatus) -> str:
    """One journey of ``status``: every value from data escaped (``printable``)."""
    p = printable
    event = (f"{p(row.event_name)} {p(json.dumps(row.event_properties, ensure_ascii=False))}"
             if row.event_name else "-")
    outcome = f" ({p(row.outcome)})" if row.outcome and row.outcome != row.status else ""
    key = f"  key={p(row.key)}" if row.key is not None else ""
    lines = [f"{p(row.workflow_id)}  {p(row.status)}{outcome}{key}  node={p(row.current_node)}  "
             f"event={event}"]
    if row.path:
        lines.append(f"    path: {' > '.join(p(node) for node in row.path)}")
    if row.exit_reason:
        lines.append(f"    exit: {p(row.exit_reason)}")
    if row.converted or row.held_out:
        group = "control group (not messaged)" if row.held_out else "messaged"
        lines.append(f"    converted: {p(row.converted or 'not yet')}; {group}")
    if row.held:
        lines.append(f"    held: {p(row.held)}")
    if row.note:
        lines.append(f"    note: {p(row.note)}")
    if row.warning:
        lines.append(f"    warning: {p(row.warning)}")
    for sent in row.outbox:
        why = f" ({p(sent.reason)})" if sent.reason else ""
        lines.append(f"    message {p(sent.node_id)}: {p(sent.channel)} {p(sent.status)}{why}")
    return "\n".join(lines)
