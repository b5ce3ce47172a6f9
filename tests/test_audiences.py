"""Audience journeys end to end on the dev server: events counted as ``starter.py ingest`` takes
them in; ``starter.py audience --count``; a segment journey run by a real Temporal Schedule
(once, recurring, in each user's local time); ``--pause``, ``--trigger``; a worker SIGKILLed mid-run
(nobody started twice, nobody missed)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import select
from temporalio.client import ScheduleIntervalSpec, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from cli.audience import occurrences
from ingestion.audiences import AUDIENCE_EVENT, PRUNE_SCHEDULE, schedule_id, sync_schedules
from journeys.events import PRIORITY_AUDIENCE, PRIORITY_AUDIENCE_RUN
from journeys.store import behaviour
from journeys.store.database import Store
from journeys.store.tables import entries
from journeys.validation.catalog import catalog
from tests.helpers.support import (
    HISTORIES,
    ROOT,
    dev_server,
    eventually,
    keep_version,
    run_cli,
    running_worker,
)
from workflows.audience import AudienceInput, AudienceWorkflow
from workflows.models import JourneyInput

QUEUE = "audiences"
CATALOG = {"events": {"Video Watched": {"properties": ["title"]},
                      "Subscription Paid": {"properties": ["amount"]}}}


def journey(journey_id: str, schedule: dict[str, Any], reentry: str = "never",
            profile: list[dict[str, Any]] | None = None, cohort: str | None = None) -> dict[str, Any]:
    """An audience journey: users of ``cohort`` (the tests' users apart) not on plan pro who
    watched 3 videos and paid nothing in 30 days get a push."""
    profile = profile or [{"property": "plan", "is_not": "pro"},
                          {"property": "cohort", "is": cohort or journey_id}]
    return {"id": journey_id, "name": f"Audience {journey_id}", "entry": "lapsed", "reentry": reentry,
            "nodes": [{"id": "lapsed", "type": "segment", "schedule": schedule,
                       "profile": profile,
                       "did": [{"event": "Video Watched", "at_least": 3, "in_last": "30d"}],
                       "did_not": [{"event": "Subscription Paid", "in_last": "30d"}],
                       "next": "push"},
                      {"id": "push", "type": "engagement", "channel": "push",
                       "message": {"body": "Come back, {{ profile.first_name | default('friend') }}"}}]}


def folder_with(path: Path, *journeys: dict[str, Any]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "event-catalog.yaml").write_text(yaml.safe_dump(CATALOG))
    for made in journeys:
        (path / f"{made['id']}.yaml").write_text(yaml.safe_dump(made, sort_keys=False))
    return path


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


@pytest.fixture(autouse=True)
async def no_schedules_left(env: WorkflowEnvironment) -> AsyncIterator[None]:
    """Each test's schedules go with it (a recurring one would fire into the next test)."""
    yield
    async for listed in await env.client.list_schedules():
        await env.client.get_schedule_handle(listed.id).delete()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audiences")


@pytest.fixture(scope="module")
def store(data_dir: Path) -> Iterator[Store]:
    made = Store(f"sqlite:///{data_dir}/journeys.db")
    yield made
    made.engine.dispose()


def seed(store: Store, prefix: str, n: int, **profile: Any) -> list[str]:
    """``n`` users who watched 3 videos yesterday (in the segment), and for each a user who
    also paid and one on plan pro (not in it); returns the ones in it."""
    now = datetime.now(UTC)
    users = [f"{prefix}-{i:04d}" for i in range(n)]
    events = []
    for user in users:
        store.update_profile(user, {"plan": "free", "cohort": prefix, **profile})
        store.update_profile(f"{user}-paid", {"plan": "free", "cohort": prefix})
        store.update_profile(f"{user}-pro", {"plan": "pro", "cohort": prefix})
        for who in (user, f"{user}-paid", f"{user}-pro"):
            events += [behaviour.Did(who, f"{who}-w{k}", "Video Watched", now - timedelta(days=1))
                       for k in range(3)]
        events.append(behaviour.Did(f"{user}-paid", f"{user}-p", "Subscription Paid", now))
    behaviour.count(store, events, 400)
    return users


def runs(store: Store, journey_id: str) -> Counter[str]:
    """Entries per user (the router records one per run)."""
    with store.engine.connect() as conn:
        return Counter(u for (u,) in conn.execute(select(entries.c.user_id).where(
            entries.c.journey_id == journey_id)))


def pushed(store: Store, journey_id: str) -> Counter[str]:
    return Counter(row.user_id for row in store.outbox_list(journey_id=journey_id))


async def cli(env: WorkflowEnvironment, data_dir: Path, folder: Path,
              *args: str) -> subprocess.CompletedProcess[str]:
    """``starter.py`` in a thread: the test's worker (on this loop) answers its queries meanwhile."""
    return await asyncio.to_thread(run_cli, env, data_dir, QUEUE, *args, JOURNEYS_DIR=str(folder))


async def test_events_ingested_are_counted_once_and_the_segment_counts_them(
        env: WorkflowEnvironment, data_dir: Path, store: Store, tmp_path: Path) -> None:
    folder = folder_with(tmp_path / "journeys", journey("counted", {"every": "1d", "at": "09:00"},
                                                        cohort="ingested"))
    now = datetime.now(UTC)
    lines = [json.dumps({"userId": user, "event": "Video Watched", "messageId": f"{user}-{k}",
                         "timestamp": (now - timedelta(days=k)).isoformat(), "properties": {"title": "t"}})
             for user in ("ingested-a", "ingested-b") for k in range(3)]
    lines.append(json.dumps({"userId": "ingested-b", "event": "Subscription Paid", "messageId": "b-paid",
                             "timestamp": now.isoformat(), "properties": {"amount": 5}}))
    feed = tmp_path / "events.ndjson"
    feed.write_text("\n".join(lines) + "\n")
    for _ in range(2):  # the same file twice: every event id counts once
        done = await cli(env, data_dir, folder, "ingest", str(feed))
        assert done.returncode == 0, done.stderr
    assert behaviour.of_user(store, "ingested-a")["Video Watched"][0] == 3
    assert behaviour.of_user(store, "ingested-b") == {
        "Video Watched": (3, behaviour.of_user(store, "ingested-b")["Video Watched"][1]),
        "Subscription Paid": (1, behaviour.of_user(store, "ingested-b")["Subscription Paid"][1])}
    store.update_profile("ingested-a", {"plan": "free", "cohort": "ingested"})
    store.update_profile("ingested-b", {"plan": "free", "cohort": "ingested"})
    counted = await cli(env, data_dir, folder, "audience", "counted", "--count", "--json")
    assert counted.returncode == 0, counted.stderr
    answer = json.loads(counted.stdout)
    assert answer["matching"] == 1 and answer["seconds"] >= 0  # ingested-b paid
    text = await cli(env, data_dir, folder, "audience", "counted", "--count")
    assert f"{answer['matching']} user(s) match the segment of 'counted' now" in text.stdout


async def test_a_one_time_schedule_enters_the_segment_once(env: WorkflowEnvironment, data_dir: Path,
                                                           store: Store, tmp_path: Path) -> None:
    users = seed(store, "once", 12)
    at = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    folder = folder_with(tmp_path / "journeys", journey("once", {"at": at.isoformat()}))
    done = await sync_schedules(env.client, catalog(folder), QUEUE, page_seconds=60, retention_days=400)
    assert done[schedule_id("once")] == "created" and PRUNE_SCHEDULE in done
    async with running_worker(env.client, store, QUEUE, catalog_dir=folder,
                              audience_options={"page_size": 5}):
        assert await until(lambda: _equal(pushed(store, "once"), users), timeout=40)
        description = await env.client.get_schedule_handle(schedule_id("once")).describe()
        assert description.schedule.state.remaining_actions == 0  # it fired, and never again
        assert await eventually(lambda: _occurrences(env, "once", "completed"), timeout=20)
    assert runs(store, "once") == Counter(dict.fromkeys(users, 1))
    occurrence = getattr(description.info.recent_actions[0].action, "workflow_id", "")
    await record(env, "audience-occurrence", occurrence)  # for tests/test_replay.py
    await record(env, "segment-entry", f"journey/once/{users[0]}")
    shown = await cli(env, data_dir, folder, "audience", "once")
    assert "audience journey 'once': schedule active; next: none" in shown.stdout
    assert f"completed  matched {len(users)}, started {len(users)}, already in 0" in shown.stdout


async def test_a_recurring_schedule_enters_again_each_occurrence(
        env: WorkflowEnvironment, data_dir: Path, store: Store, tmp_path: Path) -> None:
    users = seed(store, "daily", 4)
    folder = folder_with(tmp_path / "journeys",
                         journey("every", {"every": "1m"}, reentry="after_exit", cohort="daily"),
                         journey("never", {"every": "1d", "at": "09:00"}, cohort="daily"))
    await sync_schedules(env.client, catalog(folder), QUEUE, page_seconds=60, retention_days=400)
    spec = (await env.client.get_schedule_handle(schedule_id("never")).describe()).schedule.spec
    assert spec.intervals == [ScheduleIntervalSpec(every=timedelta(days=1), offset=timedelta(hours=9))]
    async with running_worker(env.client, store, QUEUE, catalog_dir=folder):
        # The minute's own occurrence comes (Temporal fires it), and a second one on demand.
        assert await until(lambda: _at_least(runs(store, "every"), users, 1), timeout=75)
        assert await eventually(lambda: _occurrences(env, "every", "completed"), timeout=20)
        # reentry: after_exit: a trigger enters them again once their first runs have ended.
        assert await eventually(lambda: _ended(env, "every", users), timeout=20)
        assert (await cli(env, data_dir, folder, "audience", "every", "--trigger")).returncode == 0
        ok = await until(lambda: _at_least(runs(store, "every"), users, 2), timeout=30)
        assert ok, (await cli(env, data_dir, folder, "audience", "every", "--json")).stdout
        minutely = env.client.get_schedule_handle(schedule_id("every"))
        await minutely.pause()  # no more of them
        # A trigger in the second of the last occurrence (the Temporal UI's or `temporal schedule
        # trigger`'s: Temporal keeps whole seconds) is an occurrence of its own: they enter again.
        assert await eventually(lambda: _all_completed(env, "every"), timeout=30)
        assert await eventually(lambda: _ended(env, "every", users), timeout=20)
        last = (await minutely.describe()).info.recent_actions[-1]
        again = f"{getattr(last.action, 'workflow_id', 'every')}-again"
        counts = await env.client.execute_workflow(
            AudienceWorkflow.run, AudienceInput(journey_id="every", fired=last.scheduled_at),
            id=again, task_queue=QUEUE)
        assert (counts.started, counts.already_in) == (len(users), 0)
        await record(env, "audience-occurrence-by-run", again)  # for tests/test_replay.py
        # reentry: never: a second occurrence skips them (or finds them still in it).
        for _ in range(2):
            assert (await cli(env, data_dir, folder, "audience", "never", "--trigger")).returncode == 0
            await asyncio.sleep(0)
        assert await eventually(lambda: _occurrences(env, "never", "completed", 2), timeout=30)
    assert runs(store, "never") == Counter(dict.fromkeys(users, 1))
    shown = json.loads((await cli(env, data_dir, folder, "audience", "never", "--json")).stdout)
    assert sorted((o["counts"]["started"], o["counts"]["skipped"] + o["counts"]["already_in"])
                  for o in shown["occurrences"]) == [(0, len(users)), (len(users), 0)]
    # Each occurrence entered each user once: as many runs as occurrences that completed.
    every = json.loads((await cli(env, data_dir, folder, "audience", "every", "--json")).stdout)
    completed = [o for o in every["occurrences"] if o["status"] == "completed"]
    assert all(n == len(completed) + 1 for n in runs(store, "every").values() if n)  # (+ again)
    resumed = await cli(env, data_dir, folder, "audience", "every", "--resume")
    assert "schedule active" in resumed.stdout
    paused = await cli(env, data_dir, folder, "audience", "every", "--pause")
    assert "schedule paused" in paused.stdout


async def test_local_time_enters_each_user_at_their_hour(env: WorkflowEnvironment, data_dir: Path,
                                                         store: Store, tmp_path: Path) -> None:
    zones = {"local-kiri": "Pacific/Kiritimati", "local-la": "America/Los_Angeles",
             "local-utc": None, "local-bad": "Not/AZone"}
    for user, zone in zones.items():
        given = {"timezone": zone} if zone else {}
        store.update_profile(user, {"plan": "free", "cohort": "local", **given})
        behaviour.count(store, [behaviour.Did(user, f"{user}-{k}", "Video Watched", datetime.now(UTC))
                                for k in range(3)], 400)
    at = "09:00"
    folder = folder_with(tmp_path / "journeys", journey(
        "local", {"every": "1d", "at": at, "local_time": True},
        profile=[{"property": "plan", "is": "free"}, {"property": "timezone", "exists": True}]),
        journey("local-all", {"every": "1d", "at": at, "local_time": True}, cohort="local"))
    await sync_schedules(env.client, catalog(folder), QUEUE, page_seconds=60, retention_days=400)
    spec = (await env.client.get_schedule_handle(schedule_id("local")).describe()).schedule.spec
    assert spec.intervals == [ScheduleIntervalSpec(every=timedelta(days=1), offset=timedelta(hours=19))]
    async with running_worker(env.client, store, QUEUE, catalog_dir=folder):
        assert (await cli(env, data_dir, folder, "audience", "local-all", "--trigger")).returncode == 0
        assert await eventually(lambda: _occurrences(env, "local-all", "completed"), timeout=30)
    for user, zone in zones.items():
        handle = env.client.get_workflow_handle(f"journey/local-all/{user}")
        described = await handle.describe()
        first = await anext(aiter(handle.fetch_history_events()))
        [given] = await env.client.data_converter.decode(
            first.workflow_execution_started_event_attributes.input.payloads, [JourneyInput])
        assert given.entry_event is not None and given.entry_event.name == AUDIENCE_EVENT
        fired = given.entry_event.time
        reading = (fired + timedelta(hours=14)).replace(second=0, microsecond=0, tzinfo=None)
        due = reading.replace(tzinfo=ZoneInfo(zone if zone and zone != "Not/AZone" else "UTC"))
        expected = max(due.astimezone(UTC), described.start_time)
        assert described.execution_time is not None
        late = (described.execution_time - expected).total_seconds()
        assert abs(late) < 5, (user, described.execution_time, expected)
        # A broadcast's users are served after the journeys that events start, fairly by journey.
        priority = described.raw_description.workflow_execution_info.priority
        assert (priority.priority_key, priority.fairness_key) == (PRIORITY_AUDIENCE, "local-all")
    schedule = await env.client.get_schedule_handle(schedule_id("local-all")).describe()
    [occurrence] = schedule.info.recent_actions
    run = await env.client.get_workflow_handle(getattr(occurrence.action, "workflow_id", "")).describe()
    priority = run.raw_description.workflow_execution_info.priority
    assert (priority.priority_key, priority.fairness_key) == (PRIORITY_AUDIENCE_RUN, "audience/local-all")


async def test_a_worker_killed_mid_run_starts_nobody_twice_and_misses_nobody(
        env: WorkflowEnvironment, data_dir: Path, store: Store, tmp_path: Path) -> None:
    users = seed(store, "killed", 150)
    folder = folder_with(tmp_path / "journeys", journey("killed", {"every": "1d", "at": "03:00"}))
    environ = {**os.environ, "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
               "JOURNEYS_TASK_QUEUE": f"{QUEUE}-killed", "JOURNEYS_DIR": str(folder),
               "JOURNEYS_DATA_DIR": str(data_dir), "JOURNEYS_AUDIENCE_RATE": "25",
               # The fixed rate: this is about the kill, not the pace (which, adapting, yields
               # to the rest of make test's load down to a user a second: 150 take minutes).
               "JOURNEYS_AUDIENCE_DELAY": "0", "JOURNEYS_AUDIENCE_PAGE": "40"}

    def worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=environ,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = worker()
    try:  # the worker makes the schedule itself when it starts
        handle = env.client.get_schedule_handle(schedule_id("killed"))
        assert await eventually(lambda: _exists(handle), timeout=30)
        await handle.trigger()
        assert await until(lambda: len(runs(store, "killed")) >= 50, timeout=30)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        partway = len(runs(store, "killed"))
        assert partway < len(users)
        second = worker()
        try:
            assert await until(lambda: _equal(runs(store, "killed"), users), timeout=90)
            assert await eventually(lambda: _occurrences(env, "killed", "completed"), timeout=30)
            # Every journey it started sends its push once (those of the killed worker too).
            assert await until(lambda: _equal(pushed(store, "killed"), users), timeout=60)
        finally:
            second.terminate()
            second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()
    assert runs(store, "killed") == Counter(dict.fromkeys(users, 1))  # each once: nobody twice
    assert pushed(store, "killed") == Counter(dict.fromkeys(users, 1))


async def record(env: WorkflowEnvironment, name: str, wid: str) -> None:
    """Keep a run's history for the replay test (JOURNEYS_RECORD_HISTORIES=1 rewrites it)."""
    path = HISTORIES / f"{name}.json"
    if os.environ.get("JOURNEYS_RECORD_HISTORIES") or not path.exists():
        history = await env.client.get_workflow_handle(wid).fetch_history()
        path.write_text(history.to_json())
        started = history.events[0].workflow_execution_started_event_attributes
        if started.workflow_type.name == "JourneyWorkflow":
            keep_version(history)


async def until(check: Any, timeout: float) -> bool:
    """``eventually`` for a check that is not async (the store's, read in a thread)."""
    async def asked() -> bool:
        return bool(await asyncio.to_thread(check))
    return bool(await eventually(asked, timeout=timeout))


async def _ended(env: WorkflowEnvironment, journey_id: str, users: list[str]) -> bool:
    """Have the users' latest runs of the journey ended?"""
    for user in users:
        info = await env.client.get_workflow_handle(f"journey/{journey_id}/{user}").describe()
        if info.status == WorkflowExecutionStatus.RUNNING:
            return False
    return True


async def _all_completed(env: WorkflowEnvironment, journey_id: str) -> bool:
    described = await env.client.get_schedule_handle(schedule_id(journey_id)).describe()
    return all(o["status"] == "completed" for o in await occurrences(env.client, described))


def _equal(found: Counter[str], users: list[str]) -> bool:
    return found == Counter(dict.fromkeys(users, 1))


def _at_least(found: Counter[str], users: list[str], n: int) -> bool:
    return all(found[u] >= n for u in users)


async def _exists(handle: Any) -> bool:
    try:
        await handle.describe()
        return True
    except Exception:
        return False


async def _occurrences(env: WorkflowEnvironment, journey_id: str, status: str, at_least: int = 1) -> bool:
    """Have ``at_least`` occurrences of the journey's schedule come to ``status``? (Asked of
    Temporal here, as ``starter.py audience`` does, without a process per look.)"""
    described = await env.client.get_schedule_handle(schedule_id(journey_id)).describe()
    return sum(o["status"] == status for o in await occurrences(env.client, described)) >= at_least


