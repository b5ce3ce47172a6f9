"""Controller-node activities: profile updates, split choices, date/time moments."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from temporalio import activity

from activities.models import (
    ChooseBranchInput,
    ResolveDateInput,
    ResolveDateResult,
    UpdateProfileInput,
    UpdateProfileResult,
    event_of,
)
from journeys.events import Event
from journeys.language.limits import LimitExceeded, brief
from journeys.language.zones import zone
from journeys.personalization.personalize import MissingValue, TemplateError, evaluate, render
from journeys.store.database import Store
from telemetry.logs import with_ids

_log = structlog.get_logger("profiles")


def _timezone(profile: dict[str, Any]) -> ZoneInfo:
    return zone(profile.get("timezone")) or ZoneInfo("UTC")


def _parse(value: Any, tz: ZoneInfo) -> tuple[datetime, bool] | None:
    """(moment, date only?) from an ISO date or date-time; naive times are the user's local."""
    if isinstance(value, datetime):
        parsed: datetime | date = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(parsed, datetime):
        if len(str(value)) == 10:  # a bare date parses as midnight
            return datetime.combine(parsed.date(), time(0), tz), True
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)).astimezone(tz), False
    return None


def fire_moment(value: Any, offset: timedelta, at: str | None, tz: ZoneInfo, now: datetime,
                *, recurring: bool) -> datetime | None:
    """The moment a date/time node fires: the date plus offset, at the local ``at`` time.

    Profile dates (birthdays, anniversaries) recur: a past one fires on its next anniversary.
    """
    try:
        return _fire_moment(value, offset, at, tz, now, recurring=recurring)
    except (ValueError, OverflowError):  # a date at the edge of the calendar: not a date to us
        return None


def _fire_moment(value: Any, offset: timedelta, at: str | None, tz: ZoneInfo, now: datetime,
                 *, recurring: bool) -> datetime | None:
    parsed = _parse(value, tz)
    if parsed is None:
        return None
    base, date_only = parsed
    for years in range(0, 200 if recurring and date_only else 1):
        try:
            day = base.replace(year=base.year + years)
        except ValueError:  # 29 February in a common year
            day = base.replace(year=base.year + years, day=28)
        moment = day + offset
        if at:
            hour, minute = (int(part) for part in at.split(":"))
            moment = moment.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if not recurring or not date_only or moment >= now:
            return moment.astimezone(UTC)
    return None


class Controllers:
    """Activities that read or write the profile, with the store injected."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _event(self, input: UpdateProfileInput | ChooseBranchInput | ResolveDateInput) -> Event | None:
        return event_of(input.event, input.kept_event, input.kept_in, input.user_id,
                        self.store.kept_event)

    @activity.defn(name="update_profile")
    @with_ids
    def update_profile(self, input: UpdateProfileInput) -> UpdateProfileResult:
        profile = self.store.profile(input.user_id)
        found = self._event(input)
        event = found.properties if found else None
        written: dict[str, Any] = {}
        skipped: dict[str, str] = {}
        for prop, template in input.set.items():
            try:
                written[prop] = render(template, profile, event)
            except (MissingValue, TemplateError) as exc:
                skipped[prop] = str(exc)
        if written:
            try:
                self.store.update_profile(input.user_id, written)
            except LimitExceeded as exc:  # retrying cannot make the profile smaller
                skipped |= {prop: str(exc) for prop in written}
                written = {}
        return UpdateProfileResult(properties=sorted(written),
                                   skipped={prop: brief(why) for prop, why in skipped.items()})

    @activity.defn(name="choose_branch")
    @with_ids
    def choose_branch(self, input: ChooseBranchInput) -> str:
        """First branch whose ``when`` holds wins; a missing value makes a branch false.

        A condition that fails on this user's data (``profile.tier > 3`` with a text tier) is
        false too: retrying could never make it hold, and the user must not be stuck.
        """
        profile = self.store.profile(input.user_id)
        found = self._event(input)
        event = found.properties if found else None
        for i, branch in enumerate(input.branches):
            try:
                if evaluate(branch.when, profile, event):
                    return branch.next
            except TemplateError as exc:
                # The error may quote a profile value: its text at debug only.
                activity.logger.warning("split branch is false: its condition failed",
                                        extra={"branch": i})
                activity.logger.debug("split branch %d failed: %s", i, exc)
        return input.otherwise

    @activity.defn(name="resolve_date")
    @with_ids
    def resolve_date(self, input: ResolveDateInput) -> ResolveDateResult:
        profile = self.store.profile(input.user_id)
        tz = _timezone(profile)
        if input.profile_property:
            name, value = f"profile.{input.profile_property}", profile.get(input.profile_property)
        else:
            found = self._event(input)
            props = found.properties if found else {}
            name, value = f"event.{input.date_property}", props.get(input.date_property or "")
        if value is None:
            return ResolveDateResult(reason=f"{name} is missing")
        moment = fire_moment(value, input.offset, input.at, tz, input.now,
                             recurring=input.profile_property is not None)
        if moment is None and input.previous is not None:
            # Not the value (personal data): the journey, user and node are bound by with_ids.
            _log.warning("profile date changed to a value that is not a date: the wait keeps "
                         "the date it had", property=input.profile_property or input.date_property)
            return ResolveDateResult(moment=input.previous)
        if moment is None:  # (the value is the user's data: the debug log, not the history)
            activity.logger.debug("not a date: %s = %r", name, brief(str(value)))
            return ResolveDateResult(reason=f"{name} is not a date")
        return ResolveDateResult(moment=moment)
