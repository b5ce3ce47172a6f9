"""Sending policy: quiet hours (held or dropped messages) and the frequency caps' refusal.

Whether it is quiet reads the user's ``timezone`` profile property, so it is an activity; the
workflow passes its clock in (the time-skipping server's in tests, like ``resolve_date``) and
holds the message on a durable timer until the moment this returns.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import structlog
from pydantic import BaseModel
from temporalio import activity

from activities.models import SendMessageInput, SendResult, addressed, message_event, public_reason
from journeys.language.models import QuietHours
from journeys.language.zones import zone
from journeys.store.database import OutboxRow, Store
from telemetry.logs import count_message, with_ids

_log = structlog.get_logger("policy")


class QuietHoursInput(BaseModel):
    """Is it quiet for this user now, and until when?"""

    user_id: str
    node_id: str
    now: datetime  # workflow time
    quiet_hours: QuietHours
    timezone: str | None = None  # the journey's, for users whose profile has none


class QuietHoursResult(BaseModel):
    until: datetime | None = None  # the window's end (UTC) if it is quiet now, else None
    timezone: str = "UTC"  # the clock the window was read on
    label: str = ""  # "quiet hours until 08:00 Europe/Paris"


class DropMessageInput(BaseModel):
    """A message that falls in quiet hours with ``action: drop``: recorded, never sent."""

    message: SendMessageInput
    reason: str


def _clock(value: str) -> time:
    """``HH:MM`` (the model checked it: ASCII digits only) as a time of day."""
    hour, minute = value.split(":")
    return time(int(hour), int(minute))


def _instants(wall: datetime, tz: ZoneInfo) -> list[datetime]:
    """Every instant (UTC) at which the local clock reads ``wall``, earliest first: two for a
    wall time of the hour repeated in autumn (fold 0, then fold 1), and for one that does not
    exist (the hour skipped in spring) the moment the clock jumps over it."""
    found: set[datetime] = set()
    for fold in (0, 1):
        instant = wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)
        if instant.astimezone(tz).replace(tzinfo=None) == wall:  # a real reading of the clock
            found.add(instant)
    if not found:  # in a gap: fold=1 lands before the jump, fold=0 after it (whole seconds)
        low, high = sorted(wall.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1))
        while high - low > timedelta(seconds=1):
            middle = low + timedelta(seconds=(high - low).total_seconds() // 2)
            if middle.astimezone(tz).replace(tzinfo=None) >= wall:
                high = middle
            else:
                low = middle
        found.add(high)
    return sorted(found)


def quiet_until(now: datetime, quiet: QuietHours, tz: ZoneInfo) -> datetime | None:
    """When the quiet window around ``now`` ends (UTC), or None if ``now`` is not in it.

    The window is read on the local wall clock: 22:00-08:00 is quiet from 22:00 to 08:00 local
    time whatever daylight saving does in between (a night of 9 or 11 hours, not 10). It ends
    at the next instant after ``now`` at which the clock reads its end: in the hour repeated in
    autumn, 02:10 on the second pass waits for the second 02:30, not the first (long gone).
    Every comparison is between instants in UTC; the wall clock only says which instants.
    """
    now = now.astimezone(UTC)
    local = now.astimezone(tz)
    start, end, clock = _clock(quiet.start), _clock(quiet.end), local.time().replace(tzinfo=None)
    inside = start <= clock < end if start < end else (clock >= start or clock < end)
    if not inside:
        return None
    day = local.date()
    later = [instant for d in (day, day + timedelta(days=1))
             for instant in _instants(datetime.combine(d, end), tz) if instant > now]
    return min(later)


class Policy:
    """Quiet-hours activities, with the store injected."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @activity.defn(name="check_quiet_hours")
    @with_ids
    def check_quiet_hours(self, input: QuietHoursInput) -> QuietHoursResult:
        """The user's clock: their profile's ``timezone``, else the journey's, else UTC."""
        profile = self.store.profile(input.user_id)
        name, tz = "UTC", ZoneInfo("UTC")
        for candidate in (profile.get("timezone"), input.timezone):
            found = zone(candidate)
            if found is not None:
                name, tz = str(candidate), found
                break
        until = quiet_until(input.now, input.quiet_hours, tz)
        if until is None:
            return QuietHoursResult(timezone=name)
        return QuietHoursResult(until=until, timezone=name,
                                label=f"quiet hours until {input.quiet_hours.end} {name}")

    @activity.defn(name="drop_message")
    @with_ids
    def drop_message(self, input: DropMessageInput) -> SendResult:
        """Record the message ``dropped_quiet_hours`` (once per idempotency key)."""
        message = addressed(input.message)
        event = message_event(message, self.store.kept_event)
        row = OutboxRow(
            idempotency_key=message.idempotency_key, journey_id=message.journey_id,
            user_id=message.user_id, workflow_id=message.workflow_id, node_id=message.node_id,
            channel=message.channel.value, status="dropped_quiet_hours",
            reason=f"not sent: {input.reason}",
            event_name=event.name if event else None, event_id=event.id if event else None)
        stored, inserted = self.store.outbox_claim(row)
        if inserted:
            count_message(row.channel, stored.status)
        _log.info("message dropped in quiet hours", channel=row.channel, status=stored.status)
        return SendResult(status=stored.status, reason=public_reason(stored.reason),
                          duplicate=stored.status != "dropped_quiet_hours")

