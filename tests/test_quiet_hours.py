"""Quiet hours: the window on the user's wall clock across daylight-saving changes (the pure
function at Europe/Paris's 2026 changes), the activity's choice of clock, and held and dropped
messages end to end on the time-skipping server, whose clock is moved to the next changes."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.policy import Policy, QuietHoursInput, quiet_until
from connection.converter import data_converter
from journeys.language.models import Journey, QuietHours
from journeys.store.database import Store
from operate.status import user_status
from tests.helpers.support import Harness, eventually, examples, running_worker
from workflows.journey import JourneyWorkflow

PARIS = ZoneInfo("Europe/Paris")
QUEUE = "quiet-hours"
NIGHT = QuietHours(start="22:00", end="08:00")
H = timedelta(hours=1)


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- the window on the wall clock ----------------------------------------------------------------

@pytest.mark.parametrize("now, until, held", [
    # 2026-03-29: 02:00 CET becomes 03:00 CEST, the night is 9 hours long
    (utc(2026, 3, 28, 22, 0), utc(2026, 3, 29, 6, 0), 8 * H),  # 23:00 CET
    (utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 6, 0), 5.5 * H),  # 01:30 CET
    (utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 6, 0), 4.5 * H),  # 03:30 CEST
    # 2026-10-25: 03:00 CEST becomes 02:00 CET, the night is 11 hours long
    (utc(2026, 10, 24, 21, 0), utc(2026, 10, 25, 7, 0), 10 * H),  # 23:00 CEST
    (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 7, 0), 6.5 * H),  # 02:30 CEST
    (utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 7, 0), 5.5 * H),  # 02:30 CET, the second one
    # 07:59 is quiet, 08:00 is not; 22:00 is
    (utc(2026, 10, 25, 6, 59), utc(2026, 10, 25, 7, 0), timedelta(minutes=1)),
    (utc(2026, 10, 25, 7, 0), None, None),
    (utc(2026, 10, 25, 21, 0), utc(2026, 10, 26, 7, 0), 10 * H),
    (utc(2026, 10, 25, 12, 0), None, None),
])
def test_the_night_on_the_wall_clock(now: datetime, until: datetime | None,
                                     held: timedelta | None) -> None:
    assert quiet_until(now, NIGHT, PARIS) == until
    assert (until - now if until else None) == held


def test_a_window_inside_the_skipped_hour_ends_when_the_clock_jumps() -> None:
    # 02:30 never happens on 2026-03-29 in Paris: the window ends at the jump, 03:00 CEST.
    window = QuietHours(start="01:30", end="02:30")
    until = quiet_until(utc(2026, 3, 29, 0, 45), window, PARIS)  # 01:45 CET
    assert until == utc(2026, 3, 29, 1, 0)
    assert until.astimezone(PARIS).time() == time(3, 0)
    window = QuietHours(start="02:15", end="05:00")  # opens inside the gap
    assert quiet_until(utc(2026, 3, 29, 1, 5), window, PARIS) == utc(2026, 3, 29, 3, 0)  # 03:05
    assert quiet_until(utc(2026, 3, 29, 0, 55), window, PARIS) is None  # 01:55 CET


def test_the_repeated_hour_is_quiet_twice() -> None:
    # 02:00-03:00 on 2026-10-25 happens twice in Paris: both are quiet, until 03:00 CET.
    window = QuietHours(start="02:00", end="03:00")
    assert quiet_until(utc(2026, 10, 25, 0, 0), window, PARIS) == utc(2026, 10, 25, 2, 0)  # 02:00 CEST
    assert quiet_until(utc(2026, 10, 25, 1, 59), window, PARIS) == utc(2026, 10, 25, 2, 0)  # 02:59 CET
    assert quiet_until(utc(2026, 10, 25, 2, 0), window, PARIS) is None


def test_a_daytime_window() -> None:
    window = QuietHours(start="12:00", end="14:00")
    assert quiet_until(utc(2026, 6, 1, 10, 0), window, PARIS) == utc(2026, 6, 1, 12, 0)  # noon CEST
    assert quiet_until(utc(2026, 6, 1, 12, 0), window, PARIS) is None


@pytest.mark.parametrize("profile, journey_tz, clock", [
    ({"timezone": "America/New_York"}, "Europe/Paris", "America/New_York"),
    ({"timezone": "Mars/Olympus"}, "Europe/Paris", "Europe/Paris"),  # not a timezone: the journey's
    ({"timezone": "Europe"}, "Europe/Paris", "Europe/Paris"),  # a folder of the database
    ({"timezone": "A" * 5000}, "Europe/Paris", "Europe/Paris"),  # a name too long for a path
    ({"timezone": "localtime"}, None, "UTC"),  # a file of the machine, no IANA zone
    ({}, "Asia/Tokyo", "Asia/Tokyo"),
    ({}, None, "UTC"),
])
def test_the_activity_reads_the_users_clock(profile: dict[str, Any], journey_tz: str | None,
                                            clock: str, tmp_path: Any) -> None:
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    store.update_profile("ua", profile)
    now = datetime.combine(date(2026, 6, 1), time(23, 30), ZoneInfo(clock))
    result = ActivityEnvironment().run(Policy(store).check_quiet_hours, QuietHoursInput(
        user_id="ua", node_id="push", now=now, quiet_hours=NIGHT, timezone=journey_tz))
    assert result.timezone == clock
    assert result.until == datetime.combine(date(2026, 6, 2), time(8), ZoneInfo(clock))
    assert result.label == f"quiet hours until 08:00 {clock}"


# --- end to end ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
async def journeys(env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='journeys-quiet-')}/journeys.db")
    async with running_worker(env.client, store, QUEUE):
        yield Harness(env, store, [examples()["quiet-hours"]], QUEUE)


def next_change(after: datetime, *, spring: bool) -> date:
    """The next day Paris's clocks go forward (spring) or back."""
    day = after.astimezone(PARIS).date() + timedelta(days=1)
    while True:
        before = datetime.combine(day, time(0), PARIS).utcoffset()
        later = datetime.combine(day + timedelta(days=1), time(0), PARIS).utcoffset()
        if before != later and ((later or H) > (before or H)) == spring:
            return day
        day += timedelta(days=1)


async def move_clock_to(env: WorkflowEnvironment, moment: datetime) -> None:
    now = await env.get_current_time()
    assert moment > now, "the time-skipping server's clock only moves forward"
    await env.sleep(moment - now)


async def timers(harness: Harness, journey_id: str, user: str) -> list[tuple[datetime, timedelta]]:
    """(when it started, its length) of every durable timer of the journey."""
    history = await harness.handle(journey_id, user).fetch_history()
    return [(e.event_time.ToDatetime().replace(tzinfo=UTC),
             e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta())
            for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]


async def timer_summaries(harness: Harness, journey_id: str, user: str) -> list[str]:
    """What the Temporal UI shows for each timer."""
    history = await harness.handle(journey_id, user).fetch_history()
    return [data_converter.payload_converter.from_payload(e.user_metadata.summary, str)
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED and e.user_metadata.HasField("summary")]


@pytest.mark.parametrize("spring", [True, False], ids=["spring-forward", "fall-back"])
async def test_a_push_at_23h_waits_for_8h_local_across_the_change(journeys: Harness,
                                                                  spring: bool) -> None:
    user = f"night-owl-{'spring' if spring else 'autumn'}"
    if spring:  # the profile's clock; the autumn user has none and gets the journey's (Paris)
        journeys.store.update_profile(user, {"timezone": "Europe/Paris", "first_name": "Ana"})
    day = next_change(await journeys.env.get_current_time(), spring=spring)
    await move_clock_to(journeys.env, datetime.combine(day - timedelta(days=1), time(23), PARIS))
    await journeys.send(user, "Subscribed To Newsletter", {"topic": "jazz"})
    handle = journeys.handle("quiet-hours", user)

    async def held() -> str | None:
        return (await handle.query(JourneyWorkflow.status)).held
    assert await eventually(held) == "quiet hours until 08:00 Europe/Paris"
    quiet = [j for j in journeys.journeys if j.id == "quiet-hours"]
    [row] = await user_status(journeys.client, quiet, user, journeys.task_queue)
    assert row.held == "quiet hours until 08:00 Europe/Paris"  # what `starter.py status` shows
    state = await journeys.result("quiet-hours", user)
    # 23:00 to 08:00 is 8 hours of real time when the clocks go forward, 10 when they go back
    # (less the moments between 23:00 and the timer's start).
    [(started, length)] = await timers(journeys, "quiet-hours", user)
    ends = datetime.combine(day, time(8), PARIS)  # (the timer's event is a moment after the task)
    assert abs(started + length - ends) < timedelta(seconds=1)
    assert (8 * H if spring else 10 * H) - length < timedelta(seconds=5)
    sent = await journeys.send_times("quiet-hours", user)
    assert sent["push-welcome"] == (8 * H if spring else 10 * H)
    assert state.held is None
    # The SMS comes at 08:00, inside its own 21:00-09:00 window: dropped, recorded, the user goes on.
    assert [(m.node_id, m.status) for m in state.messages] == [
        ("push-welcome", "delivered"), ("sms-tip", "dropped_quiet_hours")]
    rows = {r.node_id: r for r in journeys.outbox(user)}
    assert rows["sms-tip"].status == "dropped_quiet_hours"
    assert rows["sms-tip"].reason == "not sent: in quiet hours (21:00-09:00 Europe/Paris)"
    assert rows["push-welcome"].content["body"] == "Your first jazz letter comes on Monday."
    summaries = await timer_summaries(journeys, "quiet-hours", user)
    assert summaries == ["quiet hours until 08:00 Europe/Paris (push-welcome)"]
    if spring:
        await journeys.record_history("quiet-hours-delay", "quiet-hours", user)


async def test_outside_quiet_hours_nothing_waits(journeys: Harness) -> None:
    now = await journeys.env.get_current_time()
    await move_clock_to(journeys.env, datetime.combine(
        now.astimezone(PARIS).date() + timedelta(days=1), time(12), PARIS))
    journeys.store.update_profile("noon", {"timezone": "Europe/Paris"})
    await journeys.send("noon", "Subscribed To Newsletter", {"topic": "jazz"})
    state = await journeys.result("quiet-hours", "noon")
    assert [(m.node_id, m.status) for m in state.messages] == [
        ("push-welcome", "delivered"), ("sms-tip", "delivered")]
    assert await journeys.timers("quiet-hours", "noon") == []


async def test_a_dropped_message_takes_its_outcome_path(journeys: Harness) -> None:
    doc = examples()["quiet-hours"].model_dump(mode="json")
    doc["id"] = "quiet-drop"
    push = next(n for n in doc["nodes"] if n["id"] == "push-welcome")
    push["quiet_hours"] = {"start": "20:00", "end": "07:00", "action": "drop"}
    push["on"] = {"dropped_quiet_hours": "email-welcome"}
    journey = Journey.model_validate(doc)
    harness = Harness(journeys.env, journeys.store, [journey], QUEUE)
    now = await journeys.env.get_current_time()
    await move_clock_to(journeys.env, datetime.combine(
        now.astimezone(PARIS).date() + timedelta(days=1), time(21), PARIS))
    await harness.send("late", "Subscribed To Newsletter", {"topic": "jazz"})
    state = await harness.result("quiet-drop", "late")
    # The email ignores quiet hours: it goes out at 21:00.
    assert [(m.node_id, m.status) for m in state.messages] == [
        ("push-welcome", "dropped_quiet_hours"), ("email-welcome", "delivered")]
    assert state.path == ["subscribed", "push-welcome", "email-welcome"]
    assert await harness.timers("quiet-drop", "late") == []
    await harness.record_history("quiet-hours-drop", "quiet-drop", "late")


async def test_leaving_while_held_sends_nothing(journeys: Harness) -> None:
    doc = examples()["quiet-hours"].model_dump(mode="json")
    doc.update(id="quiet-exit", exit_when=["Unsubscribed"])
    harness = Harness(journeys.env, journeys.store, [Journey.model_validate(doc)], QUEUE)
    now = await journeys.env.get_current_time()
    await move_clock_to(journeys.env, datetime.combine(
        now.astimezone(PARIS).date() + timedelta(days=1), time(23), PARIS))
    await harness.send("gone", "Subscribed To Newsletter", {"topic": "jazz"})
    handle = harness.handle("quiet-exit", "gone")

    async def held() -> str | None:
        return (await handle.query(JourneyWorkflow.status)).held
    assert await eventually(held)
    await journeys.env.sleep(H)
    await harness.send("gone", "Unsubscribed")
    state = await harness.result("quiet-exit", "gone")
    assert state.exit_reason == "exit event 'Unsubscribed'"
    # Nothing was sent, and the outbox (and status) say why the held message never went out.
    assert [(m.node_id, m.status) for m in state.messages] == [("push-welcome", "cancelled")]
    assert [(r.node_id, r.status, r.reason) for r in harness.outbox("gone")] == [
        ("push-welcome", "cancelled", "not sent: exit event 'Unsubscribed'")]
