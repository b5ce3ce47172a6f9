"""Event receipts around the router: an event id counts once per user and journey.

A receipt is claimed before an event is routed and settled "done" once it is; only "done"
makes a copy a duplicate (answered 200 by the HTTP API). A claim that was never settled (its
router failed, is still at it, or died between Temporal's answer and the store) hides nothing:
the copy is routed again, which is safe because

- a running journey ignores an event id it has seen, and a start finds the running journey
  (``USE_EXISTING``) and passes the event to it as a signal;
- a journey that the earlier copy entered and that has ended since (``reentry: after_exit``
  would let the copy in again) is found by :func:`entered_with`: that run's input names the
  event (the latest run's, or, if another event entered the user again since, an earlier run's
  found by visibility), so nothing is started, and its entry is recorded (once per run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from journeys.events import Event, Routed
from workflows.models import JourneyInput


@dataclass
class Flights:
    """The copies of an event this process routes right now, by (journey, user, event id): a copy
    that comes while another is under way waits for it and shares its outcome, so that it is
    answered "duplicate" only once the first one has been routed."""

    _under_way: dict[tuple[str, str, str], asyncio.Future[list[Routed] | None]] = field(
        default_factory=dict)

    async def once(self, key: tuple[str, str, str],
                   route: Callable[[], Awaitable[list[Routed]]]) -> tuple[list[Routed], bool]:
        """``route``'s outcome, and whether it was another copy's (this one waited). A copy
        whose first one was cancelled (its request's deadline) routes itself."""
        while (under_way := self._under_way.get(key)) is not None:
            outcome = await asyncio.shield(under_way)
            if outcome is not None:
                return outcome, True
        mine: asyncio.Future[list[Routed] | None] = asyncio.get_running_loop().create_future()
        self._under_way[key] = mine
        outcome = None
        try:
            outcome = await route()
            return outcome, False
        finally:
            del self._under_way[key]
            mine.set_result(outcome)


#: The runs of a workflow id looked at, newest first, for an event claimed and never settled.
RUNS_LOOKED = 20


async def entered_with(client: Client, wid: str, event: Event) -> tuple[str, bool] | None:
    """Did ``event`` reach a run of ``wid``? That run's chain's first run id (the entry's, as
    the funnel records it) and whether ``event`` is what entered it; None if it did not.

    Only for an event claimed earlier and never settled, never on the common path: the latest
    run's first event (one read of Temporal); if it is not that one, the newest
    ``RUNS_LOOKED`` runs by visibility, one read each (none where visibility cannot list).
    """
    found = await _entered_run(client, wid, None, event)
    if found is not None:
        return found
    quoted = wid.replace("\\", "\\\\").replace('"', '\\"')
    try:
        runs = [(run.start_time, run.run_id) async for run in client.list_workflows(
            f'WorkflowId = "{quoted}"', limit=RUNS_LOOKED)]
    except RPCError:  # no visibility (the time-skipping server): the latest run was all
        return None
    for _, run_id in sorted(runs, reverse=True):  # newest first (the latest again: one read)
        if (found := await _entered_run(client, wid, run_id, event)) is not None:
            return found
    return None


async def _entered_run(client: Client, wid: str, run_id: str | None,
                       event: Event) -> tuple[str, bool] | None:
    """:func:`entered_with` for one run (None: the latest)."""
    handle = client.get_workflow_handle(wid, run_id=run_id)
    first = None
    try:
        async for first in handle.fetch_history_events(page_size=1):  # noqa: B007 - the first one
            break
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if first is None:
        return None
    started = first.workflow_execution_started_event_attributes
    if not started.input.payloads:
        return None
    try:
        [given] = await client.data_converter.decode(started.input.payloads, [JourneyInput])
    except Exception:  # not a journey's input as this release reads it: not one of ours
        return None
    if not isinstance(given, JourneyInput):
        return None
    run = started.first_execution_run_id or started.original_execution_run_id
    if given.entry_event is not None and given.entry_event.id == event.id:
        return run, True
    if given.carried is not None and event.id in given.carried.seen_event_ids:
        return run, False  # a continued run that had the event already
    return None
