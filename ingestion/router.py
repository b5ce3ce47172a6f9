"""The client side of journeys: an event starts, wakes or ends its user's journey workflows.

Called by ``ingestion.pipeline`` (and directly by tests, the demo and the benchmark): it holds
the rules for workflow ids, re-entry and event deduplication in one place; how a run is started
(its input, search attributes, priority) is ``ingestion.starts``, and the ids of release 0.1
``ingestion.legacy``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowHandle,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from ingestion.failures import problem_of
from ingestion.keyed import instances
from ingestion.legacy import LegacyIds
from ingestion.receipts import Flights, entered_with
from ingestion.starts import RunStart, start_run
from journeys.events import (
    Event,
    Routed,
    entry_key,
    instance_id,
    listens_to,
    starts,
    starts_on_profile,
    waits_on_profile,
    workflow_id,
)
from journeys.language.limits import brief
from journeys.language.models import Journey
from journeys.store.database import Store
from journeys.store.outcomes import held_out
from workflows.journey import JourneyWorkflow

#: How often an entry is tried when the user's run keeps ending between the start and the signal.
START_ATTEMPTS = 3
# stdlib: the worker's and ``serve``'s configure_logging show its lines as JSON; a CLI that
# routes events (starter.py event, ingest) prints what failed itself, and sets no handler.
_log = logging.getLogger("journeys.router")


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
    priority: bool = True  # JOURNEYS_TASK_PRIORITY: runs carry a priority and a fairness key
    #: Where journey versions are kept (journeys.store.versions), if not in ``receipts``: a run
    #: then holds its journey's id and version. With neither, it holds the whole definition.
    versions: Store | None = None
    #: Per journey id, events only an earlier version of it listened to (ingestion.listens):
    #: its earlier runs still wait for them. Its process's Ingestion keeps it up to date.
    earlier: dict[str, frozenset[str]] = field(default_factory=dict, compare=False)
    _legacy_ids_seen: LegacyIds = field(default_factory=LegacyIds, compare=False, repr=False)
    _flights: Flights = field(default_factory=Flights, compare=False, repr=False)

    async def route_event(self, journeys: Sequence[Journey], event: Event) -> list[Routed]:
        """Every journey this event touches: entries start, waits and exits are signalled.

        A failure in one journey does not stop the others: it is reported as ``failed``. The
        event comes checked against the limits (``Ingestion.track``, the one way in, does it).
        """
        routed: list[Routed] = []
        for journey in journeys:
            entry = starts(journey, event)
            if entry or self._listens(journey, event.name):
                routed += await self._once(journey, event, entry)
        _logged(routed, event.user_id, event.name)
        return routed

    def _listens(self, journey: Journey, name: str) -> bool:
        """Does a run of ``journey`` (this version, or an earlier one) wait or exit on ``name``?"""
        return name in listens_to(journey) or name in self.earlier.get(journey.id, ())

    async def route_profile(self, journeys: Sequence[Journey], user_id: str,
                            changed: Iterable[str]) -> list[Routed]:
        """Profile-date journeys (birthdays, renewals) start when their date property is set; a
        running journey that waits on a date property that changed resolves its moment again."""
        names = list(changed)
        routed: list[Routed] = []
        for journey in journeys:
            try:
                if starts_on_profile(journey, names):
                    routed.append(await self.start(journey, user_id, None, names))
                elif waits_on_profile(journey, names) and (
                        moved := await self._profile_changed(journey, user_id, names)):
                    routed.append(moved)
            except Exception as exc:
                routed.append(_failed(journey, user_id, exc))
        _logged(routed, user_id, None)
        return routed

    async def route_retired(self, runs: Sequence[tuple[str, str]], event: Event) -> list[Routed]:
        """``event`` to the user's runs of journeys that left the catalog ((journey id, workflow
        id) pairs, :func:`ingestion.retired.runs_of`). Each run holds its own definition: it
        ignores an event it does not listen to and deduplicates ids. One that ended is left out."""
        return await self._retired(runs, event.user_id, event.name, JourneyWorkflow.event, event)

    async def profile_retired(self, runs: Sequence[tuple[str, str]], user_id: str,
                              changed: Iterable[str]) -> list[Routed]:
        """Changed profile properties to the user's runs of retired journeys (a wait on one of
        them resolves its date again; the others ignore it)."""
        return await self._retired(runs, user_id, None, JourneyWorkflow.profile_changed,
                                   list(changed))

    async def _retired(self, runs: Sequence[tuple[str, str]], user_id: str, name: str | None,
                       signal: Any, arg: Any) -> list[Routed]:
        async def one(journey_id: str, wid: str) -> Routed | None:
            try:
                await self.client.get_workflow_handle(wid).signal(signal, arg)
            except Exception as exc:  # this run failed; the others still get it
                if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
                    return None  # it has ended
                return Routed(journey_id=journey_id, workflow_id=wid, action="failed",
                              error=brief(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            return Routed(journey_id=journey_id, workflow_id=wid, action="signalled")

        done = await asyncio.gather(*(one(j, wid) for j, wid in runs))
        routed = [r for r in done if r is not None]
        _logged(routed, user_id, name)
        return routed

    async def _profile_changed(self, journey: Journey, user_id: str, names: list[str]) -> Routed | None:
        """Tell the user's running journey which profile properties changed, if it runs (each
        instance of a keyed journey)."""
        if journey.entry_key is not None:
            done = await self._each_instance(journey, user_id, lambda wid: self._signal_id(
                journey, wid, JourneyWorkflow.profile_changed, names))
            return next((r for r in done if r.action == "failed"), done[0] if done else None)
        return await self._signal_id(journey, workflow_id(journey.id, user_id),
                                     JourneyWorkflow.profile_changed, names)

    async def _once(self, journey: Journey, event: Event, entry: bool) -> list[Routed]:
        """Route ``event`` to ``journey`` unless a copy of it was routed there already (its
        receipt, when the router has the store; see ingestion.receipts)."""
        if self.receipts is None:
            return await self._guarded(journey, event, entry, recover=False)
        results, waited = await self._flights.once(
            (journey.id, event.user_id, event.id), lambda: self._claimed(journey, event, entry))
        if waited and results and all(r.action != "failed" for r in results):
            return [Routed(journey_id=journey.id, workflow_id=_instance_of(journey, event),
                           action="duplicate")]
        return results

    async def enter(self, journey: Journey, event: Event, start_delay: timedelta | None) -> Routed:
        """Enter the user into ``journey`` with ``event`` (an audience occurrence's: its id is the
        occurrence), after ``start_delay``; a user already in it is left as they are ("running").
        Once per event id, as any entry (its receipt)."""
        async def route(recover: bool) -> list[Routed]:
            try:
                return [await self.start(journey, event.user_id, event, recover=recover,
                                         start_delay=start_delay, join=False)]
            except Exception as exc:
                return [_failed(journey, event.user_id, exc, _instance_of(journey, event))]
        [routed] = (await self._claimed(journey, event, True, route) if self.receipts is not None
                    else await route(False))
        return routed

    async def _claimed(self, journey: Journey, event: Event, entry: bool,
                       route: Callable[[bool], Awaitable[list[Routed]]] | None = None) -> list[Routed]:
        receipts, user = self.receipts, event.user_id
        assert receipts is not None
        # An entry event's claim keeps it (interpreter 4): the run's activities name it, and
        # read it there, instead of each copying it into history.
        keep = entry and route is None
        # In a thread: another process holding SQLite's write lock must not stall the loop.
        try:
            state = await asyncio.to_thread(receipts.claim_event, journey.id, user, event.id,
                                            _kept_form(event) if keep else None)
        except Exception as exc:
            return [_failed(journey, user, exc, _instance_of(journey, event))]
        if state == "done":  # routed already: a copy (a client's retry, a file ingested again)
            return [Routed(journey_id=journey.id, workflow_id=_instance_of(journey, event),
                           action="duplicate")]
        recover = state == "earlier"  # (its claim kept the earlier copy: this one is not kept)
        results = await (route(recover) if route else self._guarded(
            journey, event, entry, recover=recover, kept=keep and not recover))
        if results and all(r.action != "failed" for r in results):
            try:  # only now may a copy be answered "duplicate"
                await asyncio.to_thread(receipts.settle_event, journey.id, user, event.id)
            except Exception as exc:  # routed, but not recorded: a copy is routed again, safely
                return [_failed(journey, user, exc, _instance_of(journey, event))]
        return results

    async def _guarded(self, journey: Journey, event: Event, entry: bool, *,
                       recover: bool, kept: bool = False) -> list[Routed]:
        """Route; a failure in this journey is reported (the others still get the event).
        ``kept``: the event's claim keeps it, for the run to name (interpreter 4)."""
        user = event.user_id
        try:
            if journey.entry_key is not None:
                return await self._keyed(journey, event, entry, recover, kept)
            if entry:
                return [await self.start(journey, user, event, recover=recover, kept=kept)]
            result = await self.signal(journey, event)
            return [result] if result else []
        except Exception as exc:
            return [_failed(journey, user, exc, _instance_of(journey, event))]

    async def _keyed(self, journey: Journey, event: Event, entry: bool,
                     recover: bool = False, kept: bool = False) -> list[Routed]:
        """A keyed journey: an event with the key reaches (or starts) its key's instance only;
        one without it reaches every instance of the user, and cannot start one."""
        key, user = entry_key(journey, event), event.user_id
        if key is not None:
            if entry:
                return [await self.start(journey, user, event, key=key, recover=recover, kept=kept)]
            signalled = await self._signal_id(journey, instance_id(journey.id, user, key),
                                              JourneyWorkflow.event, event)
            return [signalled] if signalled else []
        results = []
        if entry:
            results.append(Routed(
                journey_id=journey.id, workflow_id=workflow_id(journey.id, user), action="failed",
                problem="request", error=f"properties.{journey.entry_key}: missing (the key of "
                                         f"a journey '{event.name}' starts): nothing was started"))
        if self._listens(journey, event.name):
            results += await self._each_instance(journey, user, lambda wid: self._signal_id(
                journey, wid, JourneyWorkflow.event, event))
        return results

    async def _each_instance(self, journey: Journey, user_id: str,
                             signal: Callable[[str], Awaitable[Routed | None]]) -> list[Routed]:
        """Signal every instance of the user's keyed journey at once (those that ended say
        NOT_FOUND and are left out); one that fails is reported, the others still get it."""
        if self.receipts is None:
            raise RuntimeError(f"'{journey.id}' is keyed (entry_key '{journey.entry_key}'): "
                               "an event without its key needs the store to find the instances")
        ids = await asyncio.to_thread(instances, self.receipts, journey, user_id, live=True)
        done = await asyncio.gather(*(signal(wid) for wid in ids), return_exceptions=True)
        results: list[Routed] = []
        for wid, result in zip(ids, done, strict=True):
            if isinstance(result, Exception):
                results.append(_failed(journey, user_id, result, wid))
            elif isinstance(result, BaseException):
                raise result
            elif result is not None:
                results.append(result)
        return results

    async def _signal_id(self, journey: Journey, wid: str, signal: Any, arg: Any) -> Routed | None:
        """Signal one workflow by id: None if it does not run (no such id, or it has ended)."""
        try:
            await self.client.get_workflow_handle(wid).signal(signal, arg)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        return Routed(journey_id=journey.id, workflow_id=wid, action="signalled")

    async def start(self, journey: Journey, user_id: str, event: Event | None,
                    profile: list[str] | None = None, *, key: str | None = None,
                    recover: bool = False, start_delay: timedelta | None = None,
                    join: bool = True, kept: bool = False) -> Routed:
        """Start the user's journey with ``event`` in its input: one round trip to Temporal.

        The id-reuse policy encodes ``reentry``. A user already in the journey gets the event as
        a signal; if their run ends in between, the start is tried again. ``key``: the instance
        of a keyed journey (release 0.1 had none: no legacy id to look for). ``recover``: a copy
        of ``event`` was claimed before and never settled; the run it entered is looked for first.
        ``start_delay``: the run begins then; ``join`` False: a running journey is left as it is.
        ``kept``: this copy's claim keeps ``event`` in the store: the run's activities name it.
        """
        legacy, running = await self._legacy(journey, user_id) if key is None else (None, False)
        if legacy is not None and running:  # an entry of release 0.1 still runs: it gets the event
            if event:
                await legacy.signal(JourneyWorkflow.event, event)
            return Routed(journey_id=journey.id, workflow_id=legacy.id,
                          action="signalled" if event else "running")
        if legacy is not None and journey.reentry == "never":  # they did it under 0.1: once is all
            return Routed(journey_id=journey.id, workflow_id=legacy.id, action="not-reentered")
        wid = instance_id(journey.id, user_id, key)
        if recover and event is not None and (found := await entered_with(self.client, wid, event)):
            run_id, entered = found
            if entered:  # its router died (or failed) after the start: count it, start nothing
                await self._record(journey, wid, run_id, user_id)
            return Routed(journey_id=journey.id, workflow_id=wid,
                          action="started" if entered else "duplicate")
        for _ in range(START_ATTEMPTS):
            try:
                handle = await self._start(journey, user_id, event, wid, key, start_delay,
                                           kept=kept)
            except WorkflowAlreadyStartedError:  # a closed run, and reentry: never
                return Routed(journey_id=journey.id, workflow_id=wid, action="not-reentered")
            # The funnel's entries (stats), and for a keyed journey the list of the user's
            # instances that a keyless event reaches: recorded again (once per run) when the
            # start found it running, in case the router that started it failed to record it.
            if handle.result_run_id and (key is not None or started(handle)):
                await self._record(journey, wid, handle.result_run_id, user_id)
            if started(handle):
                return Routed(journey_id=journey.id, workflow_id=wid, action="started")
            if (event is None and not profile) or not join:
                return Routed(journey_id=journey.id, workflow_id=wid, action="running")
            try:
                if event is not None:
                    await handle.signal(JourneyWorkflow.event, event)
                else:  # a profile date set again: the running journey's wait may move
                    await handle.signal(JourneyWorkflow.profile_changed, profile or [])
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:  # the run ended since: enter again
                    continue
                raise
            return Routed(journey_id=journey.id, workflow_id=wid, action="signalled")
        raise RuntimeError(f"{wid}: the journey ended {START_ATTEMPTS} times while it was entered")

    async def _record(self, journey: Journey, wid: str, run_id: str, user_id: str) -> None:
        """Count an entry for the funnel (once per run), in a thread (a locked store must not
        stall the loop); a failure fails the routing, and the client's retry records it."""
        if self.receipts:
            await asyncio.to_thread(self.receipts.record_entry, journey.id, wid, run_id, user_id,
                                    held_out(journey.id, user_id, journey.control_percent))

    async def _start(self, journey: Journey, user_id: str, event: Event | None,
                     wid: str, key: str | None = None,
                     start_delay: timedelta | None = None, *, kept: bool = False) -> WorkflowHandle:
        return await start_run(
            self.client, self.task_queue, RunStart(journey, user_id, event, wid, key, start_delay, kept),
            versions=self.versions or self.receipts, search_attributes=self.search_attributes,
            send_timeout=self.send_timeout, priority=self.priority)

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
        """This journey's entry of release 0.1 for exactly this user, if any, and whether it runs."""
        if not self.legacy_ids:
            return None, False
        return await self._legacy_ids_seen.entry(self.client, journey.id, user_id)


def started(handle: WorkflowHandle) -> bool:
    """Did the start call that made ``handle`` start a new run (or find one running)?

    The SDK keeps the server's answer on the handle but has no public property for it yet.
    """
    return bool(handle._start_workflow_response.started)  # type: ignore[union-attr]


def _kept_form(event: Event) -> dict[str, Any]:
    """An entry event as its claim keeps it (JSON; read back by ``activities.models.event_of``)."""
    return event.model_dump(mode="json")


def _logged(routed: list[Routed], user_id: str, event_name: str | None) -> None:
    """A line per journey reached, with its ids: a failure as a warning; the rest at debug (an
    info line per event would cost the router more than a receipt does)."""
    debug = _log.isEnabledFor(logging.DEBUG)
    for r in routed:
        if r.action != "failed" and not debug:
            continue
        ids = {"journey_id": r.journey_id, "user_id": user_id, "workflow_id": r.workflow_id,
               "event_name": event_name, "action": r.action}
        if r.action == "failed":
            _log.warning("event not routed", extra={**ids, "error": r.error})
        else:
            _log.debug("event routed", extra=ids)


def _failed(journey: Journey, user_id: str, exc: Exception, wid: str | None = None) -> Routed:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return Routed(journey_id=journey.id, workflow_id=wid or workflow_id(journey.id, user_id),
                  action="failed", error=brief(message), problem=problem_of(exc))


def _instance_of(journey: Journey, event: Event) -> str:
    """The instance ``event`` is for: its key's (a keyed journey's event with a usable key),
    else the user's journey id."""
    try:
        key = entry_key(journey, event)
    except ValueError:
        key = None
    return instance_id(journey.id, event.user_id, key)


async def route_event(client: Client, journeys: Sequence[Journey], event: Event, task_queue: str,
                      *, search_attributes: bool = True, versions: Store | None = None
                      ) -> list[Routed]:
    """:meth:`Router.route_event` without receipts (tests, demo and benchmark); the journeys'
    versions kept in ``versions``, else each run holds its whole definition."""
    return await Router(client, task_queue, search_attributes,
                        versions=versions).route_event(journeys, event)
