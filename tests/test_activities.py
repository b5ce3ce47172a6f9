"""Activities on their own: date arithmetic at the calendar's edges, the outbox's settling."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from activities.profiles import _timezone, fire_moment
from journeys.store.database import Store

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(("value", "offset"), [
    ("0001-01-01T10:00:00+00:00", timedelta(days=-1)), ("9999-12-31", timedelta(days=2)),
    ("not a date", timedelta(0)), ("", timedelta(0)), ("1990-02-29", timedelta(0))])
def test_a_date_we_cannot_place_is_no_moment_not_an_error(value: str, offset: timedelta) -> None:
    assert fire_moment(value, offset, "09:00", PARIS, NOW, recurring=False) is None


def test_the_day_before_at_nine_local() -> None:
    moment = fire_moment("2026-12-10T14:00:00Z", timedelta(days=-1), "09:00", PARIS, NOW, recurring=False)
    assert moment == datetime(2026, 12, 9, 8, 0, tzinfo=UTC)


def test_a_past_birthday_fires_on_its_next_anniversary() -> None:
    moment = fire_moment("1992-02-29", timedelta(0), "09:00", PARIS, NOW, recurring=True)
    assert moment == datetime(2027, 2, 28, 8, 0, tzinfo=UTC)


def test_concurrent_profile_merges_keep_every_key(tmp_path: Path) -> None:
    """Two events with profile changes at once: each merge keeps the other's keys (it read
    then wrote, and the later write dropped what the earlier one added)."""
    store = Store(f"sqlite:///{tmp_path / 'journeys.db'}")
    others = [Store(f"sqlite:///{tmp_path / 'journeys.db'}") for _ in range(3)]  # as processes do

    def merge(worker: int) -> None:
        target = others[worker % len(others)]
        for i in range(25):
            target.update_profile("racer", {f"k{worker}-{i}": i})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(merge, range(8)))
    assert len(store.profile("racer")) == 8 * 25


@pytest.mark.parametrize("timezone", ["Europe", "A" * 5000, "localtime", 7])
def test_a_profile_timezone_that_is_no_zone_is_utc(timezone: object) -> None:
    """`Europe` (a folder of the database) and overlong names raised OSError: the date and
    quiet-hours activities failed on every retry, and the journey waited on them for good."""
    assert _timezone({"timezone": timezone}) == ZoneInfo("UTC")


def test_a_release_0_1_database_gains_its_new_columns(tmp_path: Path) -> None:
    """The outbox of release 0.1 had no provider_message_id: stores opening it at once (a
    worker and a command) add it once, and neither fails."""
    import sqlite3

    path = tmp_path / "journeys.db"
    with sqlite3.connect(path) as db:  # the 0.1 outbox, with one message in it
        db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, idempotency_key VARCHAR(400) NOT NULL"
                   " UNIQUE, journey_id VARCHAR(200) NOT NULL, user_id VARCHAR(200) NOT NULL,"
                   " workflow_id VARCHAR(400) NOT NULL, node_id VARCHAR(100) NOT NULL, channel"
                   " VARCHAR(20) NOT NULL, status VARCHAR(20) NOT NULL, reason TEXT, content JSON"
                   " NOT NULL, event_name VARCHAR(200), event_id VARCHAR(200), provider VARCHAR(50),"
                   " created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL)")
        db.execute("INSERT INTO outbox VALUES (1, 'k', 'j', 'u', 'w', 'n', 'push', 'delivered', NULL,"
                   " '{\"body\": \"hi\"}', NULL, NULL, 'outbox', '2026-11-01 00:00:00',"
                   " '2026-11-01 00:00:00')")
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: Store(f"sqlite:///{path}"), range(4)))
    [row] = stores[0].outbox_list()
    assert (row.idempotency_key, row.content, row.provider_message_id) == ("k", {"body": "hi"}, None)
