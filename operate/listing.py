"""``starter.py list``: journeys in flight (or closed) through Temporal visibility, paged, with
each running one's node, personalization event and next wake-up from its own state."""

from __future__ import annotations

import asyncio
from datetime import datetime

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError

from journeys.inputs import described, printable
from journeys.language.problems import UsageError
from operate.status import has_worker
from workflows.journey import JourneyWorkflow
from workflows.models import JOURNEY_ID, JOURNEY_KEY, JOURNEY_NODE, USER_ID

#: How long one running journey's state may take to answer before the row goes without it.
QUERY_TIMEOUT = 5.0


class Listed(BaseModel):
    workflow_id: str
    journey_id: str | None
    user_id: str | None
    key: str | None = None
    status: str  # running, completed, terminated, ...
    node: str | None  # where the user is (JourneyNode: the last wait)
    event: str | None = None  # the personalization event's name
    next_wake: datetime | None = None
    started_at: datetime
    closed_at: datetime | None = None
    exit_reason: str | None = None


#: What the SQLite visibility of ``temporal server start-dev`` never matches with ``=`` (it
#: keeps the query's backslash escapes as part of the value): such a value is asked by its
#: prefix and matched exactly here.
_UNMATCHABLE = ('"', "\\")

_FILTERS = (("JourneyId", "journey_id"), ("JourneyNode", "node"), ("UserId", "user_id"))


def visibility_query(journey: str | None = None, node: str | None = None, user: str | None = None,
                     status: str | None = None) -> str:
    """The list filter in Temporal's visibility language, each value quoted; a value holding
    a double quote or a backslash is asked by its prefix before them (``exact`` finishes it)."""
    parts = ['WorkflowType = "JourneyWorkflow"']
    for (name, _), value in zip(_FILTERS, (journey, node, user), strict=True):
        if value is None:
            continue
        cut = min((i for i in (value.find(c) for c in _UNMATCHABLE) if i >= 0), default=None)
        if cut is None:
            parts.append(f'{name} = "{quoted(value)}"')
        elif cut > 0:
            parts.append(f'{name} STARTS_WITH "{quoted(value[:cut])}"')
    if status == "running":
        parts.append('ExecutionStatus = "Running"')
    elif status == "closed":
        parts.append('ExecutionStatus != "Running"')
    elif status is not None:
        raise UsageError(f"--status: '{status}' is not running or closed")
    return " AND ".join(parts)


def exact(row: Listed, journey: str | None = None, node: str | None = None,
          user: str | None = None) -> bool:
    """Does ``row`` hold exactly the values asked (what the query asked by prefix only)?"""
    return all(value is None or getattr(row, field) == value
               for (_, field), value in zip(_FILTERS, (journey, node, user), strict=True))


async def list_journeys(client: Client, task_queue: str, *, journey: str | None = None,
                        node: str | None = None, user: str | None = None,
                        status: str | None = None, limit: int = 50) -> tuple[list[Listed], bool]:
    """Up to ``limit`` journeys, newest first, and whether there are more."""
    found: list[Listed] = []
    query = visibility_query(journey, node, user, status)
    try:
        async for execution in client.list_workflows(query, page_size=min(limit + 1, 1000)):
            row = _row(execution)
            if exact(row, journey, node, user):
                found.append(row)
            if len(found) > limit:
                break
    except RPCError as exc:
        raise UsageError(f"the server cannot list journeys ({described(exc)}): list needs "
                         "visibility (a dev server or a cluster, not the time-skipping server)") from None
    rows = found[:limit]
    if any(r.status == "running" for r in rows) and await has_worker(client, task_queue):
        rows = list(await asyncio.gather(*(_with_state(client, r) for r in rows)))
    return rows, len(found) > limit


def _row(execution: WorkflowExecution) -> Listed:
    attributes = execution.typed_search_attributes
    return Listed(
        workflow_id=execution.id, journey_id=attributes.get(JOURNEY_ID),
        user_id=attributes.get(USER_ID), key=attributes.get(JOURNEY_KEY),
        status=execution.status.name.lower() if execution.status else "unknown",
        node=attributes.get(JOURNEY_NODE), started_at=execution.start_time,
        closed_at=execution.close_time)


async def _with_state(client: Client, row: Listed) -> Listed:
    """A running journey's own word on where it is (its ``status`` query)."""
    if row.status != "running":
        return row
    handle = client.get_workflow_handle_for(JourneyWorkflow.run, row.workflow_id)
    try:
        state = await asyncio.wait_for(handle.query(JourneyWorkflow.status), QUERY_TIMEOUT)
    except (RPCError, TimeoutError):
        return row
    return row.model_copy(update={
        "node": state.current_node or row.node, "event": state.event.name if state.event else None,
        "next_wake": state.next_wake, "exit_reason": state.exit_reason})


def format_listed(rows: list[Listed], more: bool) -> str:
    """A table, one journey a line; every value from data escaped (``printable``), a keyed
    instance's key in its own column (user ``a/b`` with key ``c/1`` is not ``a/b/c/1``)."""
    table: list[tuple[str, ...]] = [("journey", "user", "key", "status", "node", "event",
                                     "next wake-up")]
    for r in rows:
        wake = f"{r.next_wake:%Y-%m-%d %H:%M} UTC" if r.next_wake else "-"
        table.append(tuple(printable(cell) for cell in (
            r.journey_id or "?", r.user_id or "?", "-" if r.key is None else r.key, r.status,
            r.node or "-", r.event or "-", wake)))
    if all(r.key is None for r in rows):  # no keyed journey among them: no key column
        table = [(*row[:2], *row[3:]) for row in table]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]])
             for row in table]
    lines.append(f"{len(rows)} shown" + ("; more: raise --limit or narrow the filter" if more else ""))
    return "\n".join(lines)


def quoted(value: str) -> str:
    """A value inside a visibility query's double quotes: nothing in it can end them."""
    return value.replace("\\", "\\\\").replace('"', '\\"')
