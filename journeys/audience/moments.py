"""The moments of an audience's schedule: when an occurrence is, and when each user enters.

A local-time schedule (``local_time: true``) fires :data:`EARLIEST_OFFSET` ahead of its time,
when it is that time in the earliest timezone (UTC+14); the occurrence's wall-clock reading is
the fire time plus that offset, and each user enters when their own clock reads it (their
profile's ``timezone``, else the journey's, else UTC): up to a day after the run starts. The
run starts them all at once, each with a start delay (no timer, no action of its own).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from journeys.language.segments import EARLIEST_OFFSET, Schedule, time_of_day
from journeys.language.zones import zone


def lead(schedule: Schedule) -> timedelta:
    """How far ahead of its reading an occurrence fires."""
    return EARLIEST_OFFSET if schedule.local_time else timedelta(0)


def reading(schedule: Schedule, fired: datetime) -> datetime:
    """The wall-clock reading of the occurrence that fired at ``fired`` (UTC as a reading)."""
    return (fired.astimezone(UTC) + lead(schedule)).replace(second=0, microsecond=0)


def offset(schedule: Schedule) -> timedelta:
    """A recurring ``every`` schedule's offset from the epoch's multiples (Temporal's interval
    offset): its time of day, less the lead, within one period."""
    assert schedule.every is not None
    at = time_of_day(schedule.at) if schedule.at is not None else timedelta(0)
    return (at - lead(schedule)) % schedule.every


def fires_once_at(schedule: Schedule) -> datetime | None:
    """When a one-time schedule fires (UTC)."""
    once = schedule.once
    if once is None:
        return None
    if schedule.local_time:
        return once.replace(tzinfo=UTC) - lead(schedule)  # its reading, in the earliest zone
    return once.astimezone(UTC)


def entry_moment(schedule: Schedule, read: datetime, timezone: object,
                 journey_timezone: str | None) -> datetime | None:
    """When a user whose profile says ``timezone`` enters an occurrence read ``read``: at once
    (None) unless the schedule is in local time."""
    if not schedule.local_time:
        return None
    tz = zone(timezone) or zone(journey_timezone) or UTC
    return read.replace(tzinfo=None).replace(tzinfo=tz).astimezone(UTC)
