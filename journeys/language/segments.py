"""The parts of a ``segment`` entry (an audience journey): who is in the segment, by profile and
by what they did, and when the journey's schedule lets them in.

A segment is asked of the store (journeys.audience compiles it to one SQL query); a schedule is
run by a Temporal Schedule (ingestion.audiences keeps them in step with the catalog).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from journeys.language.durations import Duration

#: A profile property a segment reads: a plain name (it becomes a bound JSON path).
PropertyName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
#: The operators of a profile condition; each condition has exactly one.
OPERATORS = ("is", "is_not", "in", "at_least", "at_most", "exists")
#: The earliest timezone (UTC+14, Pacific/Kiritimati): a local-time occurrence starts this far ahead.
EARLIEST_OFFSET = timedelta(hours=14)


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ProfileCondition(_Part):
    """One condition on a profile property, e.g. ``{property: plan, is: pro}``."""

    property: PropertyName
    is_: str | int | float | bool | None = Field(default=None, alias="is")
    is_not: str | int | float | bool | None = None
    in_: list[str | int | float] | None = Field(default=None, alias="in", min_length=1, max_length=100)
    at_least: float | None = None
    at_most: float | None = None
    exists: bool | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> ProfileCondition:
        given = [name for name in OPERATORS if getattr(self, _field(name)) is not None]
        if len(given) != 1:
            raise ValueError(f"a profile condition has one of {', '.join(OPERATORS)}; "
                             f"this one has {', '.join(given) or 'none'}")
        return self

    def rule(self) -> tuple[str, Any]:
        """(operator, value)."""
        name = next(name for name in OPERATORS if getattr(self, _field(name)) is not None)
        return name, getattr(self, _field(name))


def _field(operator: str) -> str:
    return f"{operator}_" if operator in {"is", "in"} else operator


class Did(_Part):
    """The user did ``event`` at least ``at_least`` times in the last ``in_last``."""

    event: Annotated[str, Field(min_length=1, max_length=200)]
    at_least: int = Field(default=1, ge=1, le=1_000_000)
    in_last: Duration = Field(description="e.g. 30d: counted by UTC day, back to the start of that day.")


class DidNot(_Part):
    """The user did not do ``event`` in the last ``in_last``."""

    event: Annotated[str, Field(min_length=1, max_length=200)]
    in_last: Duration


_CRON_FIELD = re.compile(r"^[0-9*,/\-A-Za-z?]+$")


class Schedule(_Part):
    """When the segment's users enter: once (``at`` a moment), or recurring (``every`` with an
    optional time of day ``at``, or ``cron``); ``local_time``: at that time in each user's own
    timezone (their profile's ``timezone``, else the journey's)."""

    at: str | None = Field(default=None, description="Once: a moment, '2026-12-24T09:00:00Z'. "
                           "With every: a time of day, HH:MM (UTC, or local with local_time).")
    every: Duration | None = Field(default=None, description="1d, 7d, 12h ...")
    cron: str | None = Field(default=None, max_length=100,
                             description="A cron expression (UTC): minute hour day month weekday.")
    local_time: bool = False

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is not None and (len(value.split()) != 5
                                  or not all(_CRON_FIELD.match(f) for f in value.split())):
            raise ValueError(f"'{value}' is not a cron expression of five fields "
                             "(minute hour day month weekday), e.g. '0 9 * * MON'")
        return value

    @model_validator(mode="after")
    def _check(self) -> Schedule:
        if self.cron is not None:
            if self.every is not None or self.at is not None:
                raise ValueError("a schedule is a cron expression, or every/at: not both")
            if self.local_time:
                raise ValueError("local_time needs 'at' (a time of day), not a cron expression")
            return self
        if self.every is not None:
            if self.every < timedelta(minutes=1):
                raise ValueError("every: at least 1m")
            if self.at is not None:
                time_of_day(self.at)
            if self.local_time and (self.at is None or self.every % timedelta(days=1)):
                raise ValueError("local_time needs whole days (every: 1d, 7d) and a time of day 'at'")
            return self
        if self.at is None:
            raise ValueError("a schedule needs 'at' (once), 'every' or 'cron'")
        moment_of(self.at)
        return self

    @property
    def once(self) -> datetime | None:
        """The moment of a one-time schedule (UTC; for local_time, the local clock's reading)."""
        recurring = self.every is not None or self.cron is not None
        return moment_of(self.at) if self.at is not None and not recurring else None


def time_of_day(value: str) -> timedelta:
    """'09:30' as the time since midnight."""
    match = re.fullmatch(r"([01][0-9]|2[0-3]):([0-5][0-9])", value)
    if not match:
        raise ValueError(f"'{value}' is not a time of day: write HH:MM, e.g. '09:00'")
    return timedelta(hours=int(match[1]), minutes=int(match[2]))


def moment_of(value: str) -> datetime:
    """An ISO moment; without a zone, UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"'{value}' is not a moment: write '2026-12-24T09:00:00Z' "
                         "(or a time of day HH:MM with 'every')") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
