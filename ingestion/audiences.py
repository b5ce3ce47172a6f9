"""Audience journeys on the worker: the activity that enters a page of a segment's users, the
one that prunes what users did, and the Temporal Schedules that run them, kept in step with the
catalog (journeys.audience asks the store; workflows.audience pages).

Each page's users enter as any entry does (ingestion.router: receipts, re-entry, start delay),
with an event whose id is the occurrence: a page entered again (a retried activity, a worker
killed mid-page) enters nobody twice. Starts are paced (ingestion.pacing: at most
``JOURNEYS_AUDIENCE_RATE``, slower while Temporal is slow) so that a broadcast leaves Temporal room
for the journeys that events start meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import Priority
from temporalio.service import RPCError, RPCStatusCode

from activities.models import AudienceCounts, AudiencePage, AudiencePageInput
from ingestion.pacing import Pacing
from ingestion.router import Router
from journeys.audience import moments, segment
from journeys.events import PRIORITY_AUDIENCE_RUN, Event, fairness_key
from journeys.language.models import Journey, SegmentNode
from journeys.language.segments import Schedule as JourneySchedule
from journeys.settings import Settings
from journeys.store import behaviour
from journeys.store.database import Store
from journeys.validation.catalog import Catalog, catalog
from telemetry.logs import with_ids
from workflows.audience import AudienceInput, AudienceWorkflow, PruneBehaviourWorkflow, PruneInput

log = logging.getLogger("journeys.audiences")
#: The entry event of an audience occurrence: it carries no properties (templates cannot read it).
AUDIENCE_EVENT = "Audience Entered"
#: Schedule ids: one per audience journey, and the daily prune.
PREFIX = "audience/"
PRUNE_SCHEDULE = "journeys/prune-behaviour"
#: How often the worker looks at the catalog for a change of its audience journeys (seconds).
SCHEDULES_RECHECK = 5.0


def schedule_id(journey_id: str) -> str:
    return f"{PREFIX}{journey_id}"


def audience_of(journey: Journey) -> SegmentNode | None:
    entry = journey.entry_node
    return entry if isinstance(entry, SegmentNode) else None


def occurrence_event(journey_id: str, user_id: str, fired: datetime,
                     occurrence: str | None = None) -> Event:
    """The entry event of ``user_id`` in the occurrence that fired at ``fired``, whose chain of
    runs began with ``occurrence`` (two occurrences may fire in one second: a trigger)."""
    at = fired.astimezone(UTC)
    chain = f":{occurrence}" if occurrence else ""
    return Event(id=f"audience:{journey_id}:{at:%Y%m%dT%H%M%SZ}{chain}", name=AUDIENCE_EVENT,
                 user_id=user_id, time=at)


class Audiences:
    """The activities, with the worker's store, journey folder and pace bound in."""

    def __init__(self, store: Store, journeys_dir: str | Path, *, rate: float = 100.0,
                 page_size: int = 500, search_attributes: bool = True,
                 send_timeout: float | None = None, priority: bool = True,
                 yield_delay: float = 0.01) -> None:
        self.store, self.journeys_dir, self.rate, self.page_size = store, journeys_dir, rate, page_size
        self.priority, self.yield_delay = priority, yield_delay
        self._paces: dict[str, Pacing] = {}  # per journey: a page goes on at the pace the last ended
        self.search_attributes, self.send_timeout = search_attributes, send_timeout

    @property
    def activities(self) -> list[Any]:
        return [self.audience_page, self.prune_behaviour]

    @activity.defn(name="audience_page")
    @with_ids
    async def audience_page(self, input: AudiencePageInput) -> AudiencePage:
        """Enter the next page of the segment's users (from where a retry's heartbeat left off)."""
        found = await asyncio.to_thread(catalog, self.journeys_dir)
        journey = next((j for j in found.journeys if j.id == input.journey_id), None)
        node = audience_of(journey) if journey is not None else None
        if journey is None or node is None:
            return AudiencePage(problem=f"journey '{input.journey_id}' is no audience journey of "
                                        "the catalog now")
        members = await asyncio.to_thread(segment.page, self.store, node, input.fired, input.after,
                                          self.page_size)
        details = activity.info().heartbeat_details
        done, counts = (int(details[0]), AudienceCounts.model_validate(details[1])) if details \
            else (0, AudienceCounts())
        router = Router(activity.client(), activity.info().task_queue, receipts=self.store,
                        search_attributes=self.search_attributes, send_timeout=self.send_timeout,
                        priority=self.priority)
        read = moments.reading(node.schedule, input.fired)
        pace = self._paces.setdefault(journey.id, Pacing(self.rate, self.yield_delay))
        start = done
        while start < len(members):
            chunk = members[start:start + pace.batch]  # about a second's worth: heartbeats stay close
            routed = await asyncio.gather(*(self._enter(router, journey, node, m, input, read, pace)
                                            for m in chunk))
            start += len(chunk)
            counts = counts.plus(_counted(routed))
            activity.heartbeat(start, counts.model_dump())
            pace.adapt()
        log.info("audience page entered", extra={"journey_id": journey.id, "users": len(members) - done,
                                                 "rate": round(pace.rate, 1)})
        return AudiencePage(counts=counts, last=members[-1].user_id if members else input.after,
                            done=len(members) < self.page_size)

    async def _enter(self, router: Router, journey: Journey, node: SegmentNode,
                     member: segment.Member, page: AudiencePageInput, read: datetime,
                     pace: Pacing) -> str:
        await pace.wait()
        at = moments.entry_moment(node.schedule, read, member.timezone, journey.timezone)
        delay = at - datetime.now(UTC) if at is not None else None
        began = asyncio.get_running_loop().time()
        entry = occurrence_event(journey.id, member.user_id, page.fired, page.occurrence)
        routed = await router.enter(journey, entry,
                                    delay if delay is not None and delay > timedelta(0) else None)
        pace.took(asyncio.get_running_loop().time() - began)
        if routed.action == "failed":  # Temporal or the store: the page is retried from its heartbeat
            raise RuntimeError(f"{member.user_id}: {routed.error or 'not entered'}")
        return routed.action

    @activity.defn(name="prune_behaviour")
    async def prune_behaviour(self, retention_days: int) -> list[int]:
        """Drop what users did past the retention; [count rows, counted ids] dropped."""
        return list(await asyncio.to_thread(behaviour.prune, self.store, retention_days))


def _counted(actions: Sequence[str]) -> AudienceCounts:
    return AudienceCounts(
        matched=len(actions), started=sum(a == "started" for a in actions),
        already_in=sum(a in {"running", "duplicate", "signalled"} for a in actions),
        skipped=sum(a == "not-reentered" for a in actions))


# --- the schedules ------------------------------------------------------------------------------

def spec_of(schedule: JourneySchedule) -> ScheduleSpec:
    """Temporal's spec of a journey's schedule (a local-time one fires ahead: journeys.audience.moments)."""
    if schedule.cron is not None:
        return ScheduleSpec(cron_expressions=[schedule.cron])
    if schedule.every is not None:
        return ScheduleSpec(intervals=[ScheduleIntervalSpec(every=schedule.every,
                                                            offset=moments.offset(schedule))])
    at = moments.fires_once_at(schedule)
    assert at is not None
    return ScheduleSpec(calendars=[ScheduleCalendarSpec(
        year=[ScheduleRange(at.year)], month=[ScheduleRange(at.month)],
        day_of_month=[ScheduleRange(at.day)], hour=[ScheduleRange(at.hour)],
        minute=[ScheduleRange(at.minute)], second=[ScheduleRange(at.second)])])


def schedule_of(journey: Journey, node: SegmentNode, task_queue: str, page_seconds: float,
                priority: bool = True) -> Schedule:
    once = node.schedule.once is not None
    ranked = Priority(priority_key=PRIORITY_AUDIENCE_RUN, fairness_key=fairness_key(schedule_id(journey.id)))
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AudienceWorkflow.run, AudienceInput(journey_id=journey.id, page_seconds=page_seconds),
            id=schedule_id(journey.id), task_queue=task_queue,
            static_summary=f"{journey.name}: audience",
            priority=ranked if priority else Priority()),
        spec=spec_of(node.schedule),
        # An occurrence still entering users when the next is due: the next waits for it.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.BUFFER_ONE),
        state=ScheduleState(note=f"journey {journey.id}", limited_actions=once,
                            remaining_actions=1 if once else 0))


async def sync_schedules(client: Client, found: Catalog, task_queue: str, *, page_seconds: float,
                         retention_days: int, priority: bool = True) -> dict[str, str]:
    """Create, update and delete the audience schedules to match ``found`` (and the daily prune);
    returns what was done per schedule id. A schedule keeps its state (paused, actions left);
    a journey that left the catalog loses its schedule (its running users go on), unless its
    broken file still claims it."""
    done: dict[str, str] = {}
    wanted = {schedule_id(j.id): (j, node) for j in found.journeys if (node := audience_of(j))}
    for sid, (journey, node) in wanted.items():
        done[sid] = await _upsert(client, sid, schedule_of(journey, node, task_queue, page_seconds, priority))
    done[PRUNE_SCHEDULE] = await _upsert(client, PRUNE_SCHEDULE, Schedule(
        action=ScheduleActionStartWorkflow(PruneBehaviourWorkflow.run,
                                           PruneInput(retention_days=retention_days),
                                           id=PRUNE_SCHEDULE, task_queue=task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(days=1),
                                                          offset=timedelta(hours=3))])))
    async for listed in await client.list_schedules():
        sid = listed.id
        if sid.startswith(PREFIX) and sid not in wanted and not found.claimed(sid.removeprefix(PREFIX)):
            with contextlib.suppress(RPCError):
                await client.get_schedule_handle(sid).delete()
                done[sid] = "deleted"
    for sid, what in done.items():
        if what != "updated":
            log.info("audience schedule %s", what, extra={"schedule_id": sid})
    return done


async def _upsert(client: Client, sid: str, schedule: Schedule) -> str:
    try:
        await client.create_schedule(sid, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        pass

    def keep_state(given: ScheduleUpdateInput) -> ScheduleUpdate:
        schedule.state = given.description.schedule.state  # paused or not, actions left
        return ScheduleUpdate(schedule=schedule)
    try:
        await client.get_schedule_handle(sid).update(keep_state)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        await client.create_schedule(sid, schedule)
        return "created"
    return "updated"


def page_seconds(settings: Settings) -> float:
    """How long a page's activity may take: its starts at the slowest pace (one a second, as a
    slow cluster makes it), twice over, and two minutes (its heartbeats find a lost worker)."""
    return settings.audience_page / min(1.0, settings.audience_rate) * 2 + 120


async def keep_schedules(client: Client, settings: Settings) -> None:
    """The worker's: the schedules in step with the catalog at start, and again each time it
    changes (looked at every :data:`SCHEDULES_RECHECK` s). A failure (Temporal or the folder
    unreachable) is logged and tried again at the next look."""
    synced: Catalog | None = None
    failed = ""
    while True:
        try:
            found = await asyncio.to_thread(catalog, settings.journeys_dir)
            if found is not synced:
                await sync_schedules(client, found, settings.task_queue,
                                     page_seconds=page_seconds(settings),
                                     retention_days=settings.behaviour_days,
                                     priority=settings.task_priority)
                synced, failed = found, ""
        except Exception as exc:
            if repr(exc) != failed:
                log.warning("audience schedules not in step with the catalog: %r", exc)
                failed = repr(exc)
        await asyncio.sleep(SCHEDULES_RECHECK)
