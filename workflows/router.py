"""The client side of journeys: an event starts, wakes or ends its user's journey workflows.

Not workflow code (it runs in ``starter.py``, the demo and the benchmark): it holds the rules
for workflow ids, re-entry, event deduplication and search attributes in one place.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from journeys.events import (
    Event,
    Routed,
    check_event,
    legacy_workflow_id,
    listens_to,
    starts,
    starts_on_profile,
    workflow_id,
)
from journeys.ingest import BadLine, Line, parse_line
from journeys.limits import brief
from journeys.models import Journey
from journeys.store import Store
from workflows.journey import JourneyWorkflow
from workflows.models import JOURNEY_ID, JOURNEY_NODE, USER_ID, JourneyInput

REUSE = {"never": WorkflowIDReusePolicy.REJECT_DUPLICATE,
         "after_exit": WorkflowIDReusePolicy.ALLOW_DUPLICATE}


@dataclass(frozen=True)
class Router:
    """Where events go: the client, the task queue, and what the deployment has switched on.

    ``receipts`` makes an event id count once per user and journey across runs and processes;
    ``legacy_ids`` also reaches journeys started under release 0.1's ids (``journey-j-u``).
    """

    client: Client
    task_queue: str
    search_attributes: bool = True
    receipts: Store | None = None
    legacy_ids: bool = False
    send_timeout: float | None = None  # JOURNEYS_SEND_TIMEOUT, pinned in each entry

    async def route_event(self, journeys: Sequence[Journey], event: Event) -> list[Routed]:
        """Every journey this event touches: entries start, waits and exits are signalled.

        A failure in one journey does not stop the others: it is reported as ``failed``.
        """
        check_event(event)
        routed: list[Routed] = []
        for journey in journeys:
            entry = starts(journey, event)
            if entry or event.name in listens_to(journey):
                result = await self._once(journey, event, entry)
                if result:
                    routed.append(result)
        return routed

    async def route_profile(self, journeys: Sequence[Journey], user_id: str,
                            changed: Iterable[str]) -> list[Routed]:
        """Profile-date journeys (birthdays, renewals) start when their date property is set."""
        names = list(changed)
        routed: list[Routed] = []
        for journey in journeys:
            if starts_on_profile(journey, names):
                try:
                    routed.append(await self.start(journey, user_id, None))
                except Exception as exc:
                    routed.append(_failed(journey, user_id, exc))
        return routed

    async def _once(self, journey: Journey, event: Event, entry: bool) -> Routed | None:
        receipts, user = self.receipts, event.user_id
        token = receipts.claim_event(journey.id, user, event.id) if receipts else None
        if receipts and token is None:  # routed already, or being routed right now
            return Routed(journey_id=journey.id, workflow_id=workflow_id(journey.id, user),
                          action="duplicate")
        result: Routed | None = None
        try:
            result = await (self.start(journey, user, event) if entry else self.signal(journey, event))
        except Exception as exc:  # this journey failed; the others still get the event
            result = _failed(journey, user, exc)
        finally:
            if receipts and token:
                done = result is not None and result.action != "failed"
                receipts.settle_event(journey.id, user, event.id, token, routed=done)
        return result

    async def start(self, journey: Journey, user_id: str, event: Event | None) -> Routed:
        """Signal-with-start the user's journey; the id-reuse policy encodes ``reentry``."""
        legacy, running = await self._legacy(journey, user_id)
        if legacy is not None and running:  # an entry of release 0.1 still runs: it gets the event
            if event:
                await legacy.signal(JourneyWorkflow.event, event)
            return Routed(journey_id=journey.id, workflow_id=legacy.id,
                          action="signalled" if event else "running")
        if legacy is not None and journey.reentry == "never":  # they did it under 0.1: once is all
            return Routed(journey_id=journey.id, workflow_id=legacy.id, action="not-reentered")
        wid = workflow_id(journey.id, user_id)
        running = await _is_running(self.client.get_workflow_handle(wid))
        attributes = TypedSearchAttributes([
            SearchAttributePair(JOURNEY_ID, journey.id), SearchAttributePair(USER_ID, user_id),
            SearchAttributePair(JOURNEY_NODE, journey.entry)]) if self.search_attributes else None
        try:
            await self.client.start_workflow(
                JourneyWorkflow.run,
                JourneyInput(journey=journey, user_id=user_id, entry_event=event,
                             search_attributes=self.search_attributes, send_timeout=self.send_timeout),
                id=wid, task_queue=self.task_queue, id_reuse_policy=REUSE[journey.reentry],
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=attributes, static_summary=f"{journey.name}: user {user_id}",
                static_details=f"journey `{journey.id}`, entered at `{journey.entry}`",
                start_signal="event" if event else None, start_signal_args=[event] if event else [])
        except WorkflowAlreadyStartedError:
            return Routed(journey_id=journey.id, workflow_id=wid, action="not-reentered")
        action = "started" if not running else "signalled" if event else "running"
        return Routed(journey_id=journey.id, workflow_id=wid, action=action)

    async def signal(self, journey: Journey, event: Event) -> Routed | None:
        """Pass an event to the user's running journey, if there is one."""
        legacy, running = await self._legacy(journey, event.user_id)
        handle = legacy if legacy is not None and running else self.client.get_workflow_handle(
            workflow_id(journey.id, event.user_id))
        try:
            await handle.signal(JourneyWorkflow.event, event)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:  # no journey, or it has ended
                return None
            raise
        return Routed(journey_id=journey.id, workflow_id=handle.id, action="signalled")

    async def _legacy(self, journey: Journey, user_id: str) -> tuple[WorkflowHandle | None, bool]:
        """This journey's entry of release 0.1 for exactly this user, if any, and whether it runs.

        Its id is ambiguous (``journey-welcome-back-ada`` may be either welcome/back-ada or
        welcome-back/ada): only its search attributes say whose it is.
        """
        if not self.legacy_ids:
            return None, False
        handle = self.client.get_workflow_handle(legacy_workflow_id(journey.id, user_id))
        description = await describe(handle)
        if description is None or not belongs_to(description, journey.id, user_id):
            return None, False
        return handle, description.status == WorkflowExecutionStatus.RUNNING


def belongs_to(description: WorkflowExecutionDescription, journey_id: str, user_id: str) -> bool:
    """Is this workflow ``journey_id``'s journey of ``user_id``, by its search attributes?"""
    attributes = description.typed_search_attributes
    return attributes.get(USER_ID) == user_id and attributes.get(JOURNEY_ID) == journey_id


async def describe(handle: WorkflowHandle) -> WorkflowExecutionDescription | None:
    try:
        return await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def _is_running(handle: WorkflowHandle) -> bool:
    description = await describe(handle)
    return description is not None and description.status == WorkflowExecutionStatus.RUNNING


def _failed(journey: Journey, user_id: str, exc: Exception) -> Routed:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return Routed(journey_id=journey.id, workflow_id=workflow_id(journey.id, user_id),
                  action="failed", error=brief(message))


async def route_event(client: Client, journeys: Sequence[Journey], event: Event, task_queue: str,
                      *, search_attributes: bool = True) -> list[Routed]:
    """:meth:`Router.route_event` without receipts (tests, demo and benchmark)."""
    return await Router(client, task_queue, search_attributes).route_event(journeys, event)


def _forget(last: dict[str, asyncio.Task[None]], user: str, done: asyncio.Task[None]) -> None:
    """A user's latest line is done: nothing of theirs is left to wait for."""
    if last.get(user) is done:
        del last[user]


@dataclass
class Ingested:
    """What ``ingest`` did: lines read, and what became of them."""

    read: int = 0
    started: int = 0
    signalled: int = 0
    ignored: int = 0  # reached no journey, or every journey had it already
    refused: list[str] = field(default_factory=list)  # "line N: why"
    failed: list[str] = field(default_factory=list)  # "line N: journey: why"


async def ingest(router: Router, journeys: Sequence[Journey], lines: Iterable[str], store: Store,
                 concurrency: int = 64, progress: Callable[[int], None] | None = None) -> Ingested:
    """Route a file of events, ``concurrency`` at a time, each user's in the file's order."""
    summary, gate = Ingested(), asyncio.Semaphore(concurrency)
    last: dict[str, asyncio.Task[None]] = {}  # each user's latest line: the next one waits for it

    async def one(line: Line, before: asyncio.Task[None] | None) -> None:
        try:
            if before is not None:
                await before
            if line.profile:
                await asyncio.to_thread(store.update_profile, line.event.user_id, line.profile)
            routed = await router.route_event(journeys, line.event)
            if line.profile:
                routed += await router.route_profile(journeys, line.event.user_id, line.profile)
            actions = {r.action for r in routed}
            summary.started += "started" in actions
            summary.signalled += "signalled" in actions and "started" not in actions
            summary.ignored += not actions & {"started", "signalled", "failed"}
            summary.failed += [f"line {line.number}: {r.journey_id}: {r.error}"
                               for r in routed if r.action == "failed"]
        except Exception as exc:  # a profile over its limit, an unreachable store ...
            summary.failed.append(f"line {line.number}: {exc}")
        finally:
            gate.release()
            if progress:
                progress(1)

    for number, text in enumerate(lines, start=1):
        try:
            line = parse_line(text, number)
        except BadLine as exc:
            summary.read += 1
            summary.refused.append(str(exc))
            if progress:
                progress(1)
            continue
        if line is None:
            continue
        summary.read += 1
        await gate.acquire()
        user = line.event.user_id
        task = asyncio.create_task(one(line, last.get(user)))
        last[user] = task
        task.add_done_callback(functools.partial(_forget, last, user))
    if last:
        await asyncio.gather(*last.values())
    return summary
