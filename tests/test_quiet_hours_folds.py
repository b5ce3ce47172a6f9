"""Quiet hours on the hours daylight saving repeats or skips, in several zones: the window is
read on the wall clock, and it ends at the next instant (compared in UTC) at which the clock
reads its end. 02:10 on the second pass of Paris's autumn hour, in a 22:00-02:30 window, waits
for the second 02:30; the first one went by an hour ago."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio.testing import ActivityEnvironment

from activities.policy import Policy, QuietHoursInput, quiet_until
from journeys.language.models import QuietHours
from journeys.store.database import Store


def instant(zone: str, day: date, clock: str, fold: int = 0) -> datetime:
    """The UTC instant at which ``zone``'s clock reads ``clock`` on ``day`` (pass ``fold``)."""
    hour, minute = map(int, clock.split(":"))
    local = datetime.combine(day, time(hour, minute), ZoneInfo(zone)).replace(fold=fold)
    return local.astimezone(UTC)


PARIS_AUTUMN, PARIS_SPRING = date(2026, 10, 25), date(2026, 3, 29)  # 03:00 -> 02:00; 02:00 -> 03:00
NY_AUTUMN, NY_SPRING = date(2026, 11, 1), date(2026, 3, 8)  # 02:00 -> 01:00; 02:00 -> 03:00
LORD_HOWE_AUTUMN = date(2026, 4, 5)  # 02:00 -> 01:30: a half hour repeated


@pytest.mark.parametrize("zone, day, window, now, fold, until, until_fold", [
    # the case: the second 02:10 waits for the second 02:30
    ("Europe/Paris", PARIS_AUTUMN, ("22:00", "02:30"), "02:10", 1, "02:30", 1),
    ("Europe/Paris", PARIS_AUTUMN, ("22:00", "02:30"), "02:10", 0, "02:30", 0),
    ("Europe/Paris", PARIS_AUTUMN, ("22:00", "02:30"), "02:00", 1, "02:30", 1),
    ("Europe/Paris", PARIS_AUTUMN, ("22:00", "02:30"), "02:29", 1, "02:30", 1),
    ("Europe/Paris", PARIS_AUTUMN, ("22:00", "02:30"), "02:40", 0, None, 0),  # the clock is past 02:30
    ("Europe/Paris", PARIS_AUTUMN, ("22:00", "02:30"), "02:40", 1, None, 0),
    # windows that start in the repeated hour
    ("Europe/Paris", PARIS_AUTUMN, ("02:15", "06:00"), "02:20", 1, "06:00", 0),
    ("Europe/Paris", PARIS_AUTUMN, ("02:15", "02:45"), "02:20", 1, "02:45", 1),
    ("Europe/Paris", PARIS_AUTUMN, ("02:15", "02:45"), "02:20", 0, "02:45", 0),
    ("Europe/Paris", PARIS_AUTUMN, ("01:00", "02:15"), "02:10", 1, "02:15", 1),
    # spring: 02:30 does not exist, the window ends when the clock jumps (03:00 CEST)
    ("Europe/Paris", PARIS_SPRING, ("22:00", "02:30"), "01:50", 0, "03:00", 0),
    ("Europe/Paris", PARIS_SPRING, ("22:00", "02:30"), "03:10", 0, None, 0),
    # America/New_York repeats 01:00-02:00 and skips 02:00-03:00
    ("America/New_York", NY_AUTUMN, ("22:00", "01:30"), "01:10", 1, "01:30", 1),
    ("America/New_York", NY_AUTUMN, ("22:00", "01:30"), "01:10", 0, "01:30", 0),
    ("America/New_York", NY_AUTUMN, ("01:20", "07:00"), "01:25", 1, "07:00", 0),
    ("America/New_York", NY_SPRING, ("22:00", "02:30"), "01:59", 0, "03:00", 0),
    # Lord Howe Island repeats half an hour (+11:00 to +10:30)
    ("Australia/Lord_Howe", LORD_HOWE_AUTUMN, ("22:00", "01:45"), "01:40", 1, "01:45", 1),
    ("Australia/Lord_Howe", LORD_HOWE_AUTUMN, ("22:00", "01:45"), "01:40", 0, "01:45", 0),
])
def test_the_window_ends_at_the_next_reading_of_its_end(
        zone: str, day: date, window: tuple[str, str], now: str, fold: int, until: str | None,
        until_fold: int) -> None:
    moment = instant(zone, day, now, fold)
    found = quiet_until(moment, QuietHours(start=window[0], end=window[1]), ZoneInfo(zone))
    if until is None:
        assert found is None
        return
    assert found == instant(zone, day, until, until_fold)
    assert found > moment  # a window never ends before the moment it was read


def test_the_held_message_waits_for_the_second_0230_through_the_activity(tmp_path: Path) -> None:
    """What the workflow is told: its timer runs from now to the later 02:30 (20 minutes)."""
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    store.update_profile("ua", {"timezone": "Europe/Paris"})
    now = instant("Europe/Paris", PARIS_AUTUMN, "02:10", fold=1)
    result = ActivityEnvironment().run(Policy(store).check_quiet_hours, QuietHoursInput(
        user_id="ua", node_id="push", now=now, quiet_hours=QuietHours(start="22:00", end="02:30")))
    assert result.until is not None
    assert (result.until - now).total_seconds() == 20 * 60
