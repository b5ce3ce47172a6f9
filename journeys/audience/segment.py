"""A segment as one SQL query over the store, on SQLite and PostgreSQL alike: profile conditions
on the profile's JSON (typed: a value of another type never matches, and never fails a cast),
``did`` and ``did_not`` on the day counts (journeys.store.behaviour). Every value is a bound
parameter; property names are validated names, bound as JSON paths too.

Users are paged by id (keyset: ``user_id > after``, never OFFSET), so a page costs the same at
the end of a large audience as at its start, and a run that resumes from its last id goes on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.sql.selectable import Subquery

from journeys.language.models import SegmentNode
from journeys.language.segments import Did as DidCondition
from journeys.language.segments import DidNot, ProfileCondition
from journeys.store.database import Store
from journeys.store.tables import behaviour, profiles

#: The JSON types of a value, by dialect: (SQLite's json_type, PostgreSQL's json_typeof).
_TYPES = {"string": (("text",), ("string",)), "number": (("integer", "real"), ("number",)),
          "boolean": (("true", "false"), ("boolean",))}


@dataclass(frozen=True)
class Member:
    """A user in the segment, and their profile's timezone (a string, or None)."""

    user_id: str
    timezone: str | None


def since(in_last: timedelta, now: datetime) -> date:
    """The first UTC day ``in_last`` covers: 30d on a Monday covers the 30 days back to the start
    of that day (what users did is counted per day)."""
    return (now.astimezone(UTC) - in_last).date()


def query(segment: SegmentNode, dialect: str, now: datetime, after: str | None = None,
          limit: int | None = None) -> Select[Any]:
    """(user id, timezone) of the segment's users, by id, after ``after``, at most ``limit``."""
    base = _base(segment, now, after)
    user = base.c.user_id
    conditions: list[ColumnElement[bool]] = [_profile(c, dialect) for c in segment.profile]
    conditions += [_did(user, c, now) for c in (segment.did[1:] if segment.did else ())]
    conditions += [_did_not(user, c, now) for c in segment.did_not]
    found = (select(user, _json(profiles.c.properties, "timezone", dialect, "string"))
             .select_from(base.outerjoin(profiles, profiles.c.user_id == user))
             .where(and_(true(), *conditions)).order_by(user))
    return found.limit(limit) if limit is not None else found


def _base(segment: SegmentNode, now: datetime, after: str | None) -> Subquery:
    """The users to look at: those who did the first ``did`` (one range of the by-event
    index), else every profile (a profile condition), else every user known to the store."""
    later = (lambda column: column > after) if after is not None else (lambda column: true())
    if segment.did:
        first = segment.did[0]
        return (select(behaviour.c.user_id)
                .where(behaviour.c.event == first.event, behaviour.c.day >= since(first.in_last, now),
                       later(behaviour.c.user_id))
                .group_by(behaviour.c.user_id)
                .having(func.sum(behaviour.c.count) >= first.at_least).subquery("base"))
    if segment.profile:
        return select(profiles.c.user_id).where(later(profiles.c.user_id)).subquery("base")
    return (select(profiles.c.user_id).where(later(profiles.c.user_id))
            .union(select(behaviour.c.user_id).where(later(behaviour.c.user_id))).subquery("base"))


def _did(user: Any, condition: DidCondition, now: datetime) -> ColumnElement[bool]:
    done = (select(func.coalesce(func.sum(behaviour.c.count), 0))
            .where(behaviour.c.user_id == user, behaviour.c.event == condition.event,
                   behaviour.c.day >= since(condition.in_last, now)).scalar_subquery())
    return done >= condition.at_least


def _did_not(user: Any, condition: DidNot, now: datetime) -> ColumnElement[bool]:
    return not_(exists().where(behaviour.c.user_id == user, behaviour.c.event == condition.event,
                               behaviour.c.day >= since(condition.in_last, now)))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | float) else "string"


def _json(column: Any, name: str, dialect: str, kind: str) -> ColumnElement[Any]:
    """``name`` of the JSON ``column`` as a value of ``kind``, NULL where it is another type (or
    absent): a CASE on its JSON type, so that no cast is tried on a value of another type."""
    item = column[name]
    typed = {"string": item.as_string(), "number": item.as_float(), "boolean": item.as_boolean()}[kind]
    names: tuple[str, ...]
    if dialect == "postgresql":
        json_type, names = func.json_typeof(column.op("->")(literal(name))), _TYPES[kind][1]
    else:
        json_type, names = func.json_type(column, literal(f'$."{name}"')), _TYPES[kind][0]
    return case((json_type.in_(names), typed), else_=None)


def _profile(condition: ProfileCondition, dialect: str) -> ColumnElement[bool]:
    operator, value = condition.rule()
    column, name = profiles.c.properties, condition.property
    if operator == "exists":
        present = or_(*(_json(column, name, dialect, kind).is_not(None) for kind in _TYPES))
        return present if value else not_(present)
    if operator == "in":
        kinds = {_kind(v) for v in value}
        return or_(*(_json(column, name, dialect, kind).in_([v for v in value if _kind(v) == kind])
                     for kind in sorted(kinds))) if value else false()
    if operator in {"at_least", "at_most"}:
        number = _json(column, name, dialect, "number")
        return number >= value if operator == "at_least" else number <= value
    same = _json(column, name, dialect, _kind(value)) == value
    if operator == "is":
        return same
    return or_(_json(column, name, dialect, _kind(value)).is_(None), not_(same))  # is_not: absent too


def page(store: Store, segment: SegmentNode, now: datetime, after: str | None,
         limit: int) -> list[Member]:
    """The next ``limit`` users of the segment after ``after`` (None: from the first)."""
    with store.engine.connect() as conn:
        rows = conn.execute(query(segment, store.engine.dialect.name, now, after, limit)).all()
    return [Member(user_id, timezone) for user_id, timezone in rows]


def count(store: Store, segment: SegmentNode, now: datetime | None = None) -> tuple[int, float]:
    """How many users are in the segment now, and the seconds the query took."""
    now = now or datetime.now(UTC)
    matching = query(segment, store.engine.dialect.name, now).subquery()
    started = time.perf_counter()
    with store.engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(matching)).scalar_one()
    return int(n), time.perf_counter() - started


def members(store: Store, segment: SegmentNode, now: datetime | None = None,
            page_size: int = 1000) -> Sequence[str]:
    """Every user in the segment, by id (for tests and small audiences)."""
    now = now or datetime.now(UTC)
    found: list[str] = []
    after = None
    while batch := page(store, segment, now, after, page_size):
        found += [m.user_id for m in batch]
        after = batch[-1].user_id
    return found
