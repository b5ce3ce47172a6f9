"""Segments asked of the store, on SQLite and PostgreSQL: what users did, counted per day and
once per event id; profile conditions typed (a value of another type never matches, and never
fails a cast); did and did_not windows; keyset pages; the query's parameters bound."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from journeys.audience import moments, segment
from journeys.events import PRIORITY_EVENT, PRIORITY_TRANSACTIONAL, fairness_key, priority_of
from journeys.language.models import Journey, SegmentNode
from journeys.language.segments import Schedule
from journeys.store import behaviour
from journeys.store.database import Store
from journeys.store.tables import behaviour as behaviour_table
from journeys.store.tables import behaviour_counted
from tests.helpers.postgres import store_on

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with store_on(request.param, tmp_path, "journeys_segments") as made:
        yield made


def did(user: str, event_id: str, name: str, days_ago: float = 0) -> behaviour.Did:
    return behaviour.Did(user, event_id, name, NOW - timedelta(days=days_ago))


@pytest.fixture
def people(store: Store) -> Store:
    """ann: pro, 30, Paris, watched 4 (one 40 days ago); bob: free, age 'x' (a string), watched 1;
    cid: pro, 17, watched 3 and paid; dee: no profile, watched 5; eve: pro, true vip, nothing done."""
    store.update_profile("ann", {"plan": "pro", "age": 30, "timezone": "Europe/Paris"})
    store.update_profile("bob", {"plan": "free", "age": "x"})
    store.update_profile("cid", {"plan": "pro", "age": 17})
    store.update_profile("eve", {"plan": "pro", "vip": True, "age": 30.5})
    events = [did("ann", f"a{i}", "Video Watched", i) for i in range(3)] + [
        did("ann", "a-old", "Video Watched", 40), did("bob", "b0", "Video Watched"),
        *(did("cid", f"c{i}", "Video Watched") for i in range(3)),
        did("cid", "c-paid", "Subscription Paid", 2),
        *(did("dee", f"d{i}", "Video Watched", 1) for i in range(5))]
    assert behaviour.count(store, events, 400, now=NOW) == len(events)
    return store


def node(**fields: Any) -> SegmentNode:
    return SegmentNode.model_validate({"id": "s", "type": "segment", "schedule": {"every": "1d"}, **fields})


WATCHED_3 = {"event": "Video Watched", "at_least": 3, "in_last": "30d"}
PAID = {"event": "Subscription Paid", "in_last": "30d"}


@pytest.mark.parametrize(("fields", "expected"), [
    ({"did": [WATCHED_3]}, ["ann", "cid", "dee"]),
    ({"did": [{**WATCHED_3, "at_least": 4}]}, ["dee"]),  # ann's fourth is 40 days old
    ({"did": [{**WATCHED_3, "at_least": 4, "in_last": "60d"}]}, ["ann", "dee"]),
    ({"did": [WATCHED_3], "did_not": [PAID]}, ["ann", "dee"]),
    ({"did": [WATCHED_3, {"event": "Subscription Paid", "in_last": "7d"}]}, ["cid"]),
    ({"did_not": [{"event": "Video Watched", "in_last": "30d"}]}, ["eve"]),
    ({"profile": [{"property": "plan", "is": "pro"}]}, ["ann", "cid", "eve"]),
    ({"profile": [{"property": "plan", "is_not": "pro"}]}, ["bob"]),  # no profile: not in profiles
    ({"profile": [{"property": "age", "at_least": 18}]}, ["ann", "eve"]),  # bob's 'x' never matches
    ({"profile": [{"property": "age", "at_most": 18}]}, ["cid"]),
    ({"profile": [{"property": "vip", "is": True}]}, ["eve"]),
    ({"profile": [{"property": "plan", "in": ["free", "gold"]}]}, ["bob"]),
    ({"profile": [{"property": "timezone", "exists": True}]}, ["ann"]),
    ({"profile": [{"property": "plan", "is": "pro"}], "did": [WATCHED_3]}, ["ann", "cid"]),
    ({"profile": [{"property": "plan", "is_not": "pro"}], "did": [WATCHED_3]}, ["dee"]),  # no profile
    ({}, ["ann", "bob", "cid", "dee", "eve"]),
])
def test_a_segment_is_one_query_on_either_database(people: Store, fields: dict[str, Any],
                                                    expected: list[str]) -> None:
    segment_node = node(**fields)
    assert segment.members(people, segment_node, NOW, page_size=2) == expected
    assert segment.count(people, segment_node, NOW)[0] == len(expected)


def test_pages_go_by_user_id_after_the_last(people: Store) -> None:
    everyone = node()
    first = segment.page(people, everyone, NOW, None, 2)
    assert [m.user_id for m in first] == ["ann", "bob"]
    assert first[0].timezone == "Europe/Paris" and first[1].timezone is None
    assert [m.user_id for m in segment.page(people, everyone, NOW, "bob", 2)] == ["cid", "dee"]
    assert [m.user_id for m in segment.page(people, everyone, NOW, "dee", 2)] == ["eve"]


def test_values_are_bound_parameters_never_sql(people: Store) -> None:
    hostile = "x' OR '1'='1"
    segment_node = node(profile=[{"property": "plan", "is": hostile}],
                        did=[{"event": hostile, "in_last": "1d"}])
    compiled = str(segment.query(segment_node, people.engine.dialect.name, NOW).compile(people.engine))
    assert hostile not in compiled
    assert segment.members(people, segment_node, NOW) == []


def test_an_event_id_counts_once_and_days_keep_first_and_last(store: Store) -> None:
    events = [did("ann", "e1", "Viewed", 0), did("ann", "e2", "Viewed", 0.1)]
    assert behaviour.count(store, events, 400, now=NOW) == 2
    assert behaviour.count(store, [*events, did("ann", "e3", "Viewed", 0.05)], 400, now=NOW) == 1
    with store.engine.connect() as conn:
        [row] = conn.execute(select(behaviour_table)).all()
    assert row.count == 3 and row.first_at == NOW - timedelta(days=0.1) and row.last_at == NOW
    assert behaviour.of_user(store, "ann") == {"Viewed": (3, NOW)}


def test_old_events_are_not_counted_and_pruning_keeps_the_retention(store: Store) -> None:
    assert behaviour.count(store, [did("ann", "old", "Viewed", 500)], 400, now=NOW) == 0
    behaviour.count(store, [did("ann", "e1", "Viewed", 300), did("ann", "e2", "Viewed", 1)], 400, now=NOW)
    assert behaviour.prune(store, 400, now=NOW + timedelta(days=8)) == (0, 2)  # counted ids: 7 days
    assert behaviour.prune(store, 400, now=NOW + timedelta(days=200)) == (1, 0)  # 300 days old is 500 now
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(behaviour_table)).scalar() == 1
        assert conn.execute(select(func.count()).select_from(behaviour_counted)).scalar() == 0


def test_local_time_occurrences_fire_a_day_ahead_and_each_user_enters_at_their_hour() -> None:
    daily = Schedule(every="1d", at="09:00", local_time=True)
    assert moments.offset(daily) == timedelta(hours=19)  # 09:00 in UTC+14 is 19:00 UTC the day before
    read = moments.reading(daily, datetime(2026, 12, 2, 19, 0, 7, tzinfo=UTC))
    assert read == datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    def utc(day: int, hour: int) -> datetime:
        return datetime(2026, 12, day, hour, 0, tzinfo=UTC)
    assert moments.entry_moment(daily, read, "Pacific/Kiritimati", None) == utc(2, 19)
    assert moments.entry_moment(daily, read, "America/Los_Angeles", None) == utc(3, 17)
    assert moments.entry_moment(daily, read, "Nowhere/Land", "Europe/Paris") == utc(3, 8)
    assert moments.entry_moment(Schedule(every="1d", at="09:00"), read, "Europe/Paris", None) is None
    once = Schedule(at="2026-12-24T09:00", local_time=True)
    assert moments.fires_once_at(once) == utc(23, 19)
    assert moments.fires_once_at(Schedule(at="2026-12-24T09:00:00+01:00")) == utc(24, 8)


@pytest.mark.parametrize(("given", "message"), [
    ({}, "a schedule needs 'at' (once), 'every' or 'cron'"),
    ({"cron": "0 9 * *"}, "is not a cron expression of five fields"),
    ({"cron": "0 9 * * *", "local_time": True}, "local_time needs 'at'"),
    ({"every": "1d", "local_time": True}, "local_time needs whole days"),
    ({"every": "30s"}, "every: at least 1m"),
    ({"at": "tomorrow"}, "is not a moment"),
    ({"every": "1d", "at": "9am"}, "is not a time of day"),
])
def test_a_schedule_that_cannot_run_is_refused(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Schedule.model_validate(given)


def test_priority_goes_by_kind_unless_the_journey_says() -> None:
    def made(**fields: Any) -> Journey:
        return Journey.model_validate({"id": "j", "name": "J", "entry": "e", **fields, "nodes": [
            {"id": "e", "type": "action", "event": "E"} if "entry_type" not in fields else
            {"id": "e", "type": "segment", "schedule": {"every": "1d"}}]})
    assert priority_of(made(category="transactional")) == PRIORITY_TRANSACTIONAL == 1
    assert priority_of(made()) == PRIORITY_EVENT == 2
    assert priority_of(made(priority=5)) == 5
    assert fairness_key("j" * 64) == "j" * 64
    long = fairness_key("j" * 100)
    assert len(long.encode()) <= 64 and long != fairness_key("j" * 99 + "k")
