"""What users did, kept small: per user, event name and UTC day, a count with the first and last
time (table ``behaviour``), not the events. Segments (journeys.audience) are asked of it.

Ingestion counts events in batches (:func:`count`: one transaction for every event of a batch).
An event id counts once: the ids counted lately are kept (``behaviour_counted``,
:data:`COUNTED_DAYS` days), so a client's retry of an event counts nothing more. Both tables are
pruned by :func:`prune` (the worker's daily schedule), the counts after the retention
(``JOURNEYS_BEHAVIOUR_DAYS``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from journeys.store.database import Store
from journeys.store.tables import behaviour, behaviour_counted

#: How long an event id is remembered as counted: a copy of an event later than this counts again.
COUNTED_DAYS = 7


@dataclass(frozen=True)
class Did:
    """One event a user did, as counted: whose, its id, its name, when (timezone-aware)."""

    user_id: str
    event_id: str
    name: str
    time: datetime


def count(store: Store, events: Iterable[Did], retention_days: int,
          now: datetime | None = None) -> int:
    """Count ``events`` in one transaction; returns how many were new (not counted before).
    Events older than ``retention_days`` (their own time) are not counted."""
    now = now or datetime.now(UTC)
    oldest = (now - timedelta(days=retention_days)).date()
    seen: dict[tuple[str, str], Did] = {}
    for did in events:
        if did.time.astimezone(UTC).date() >= oldest:
            seen.setdefault((did.user_id, did.event_id), did)
    if not seen:
        return 0
    statements = _statements(store)
    with store.engine.begin() as conn:
        # One cached statement for every batch (executemany; RETURNING the rows it inserted).
        inserted = conn.execute(statements[0], [{"user_id": u, "event_id": e, "day": now.date()}
                                                for u, e in seen])
        new = [seen[(u, e)] for u, e in inserted]
        if new:
            conn.execute(statements[1], _days(new))
    return len(new)


def _days(new: Sequence[Did]) -> list[dict[str, Any]]:
    """``new`` as rows of day counts, in key order (two batches at once on PostgreSQL lock rows
    in the same order: no deadlock)."""
    days: dict[tuple[str, str, date], list[Any]] = {}
    for did in new:
        at = did.time.astimezone(UTC)
        key = (did.user_id, did.name, at.date())
        if (row := days.get(key)) is None:
            days[key] = [1, at, at]
        else:
            row[0], row[1], row[2] = row[0] + 1, min(row[1], at), max(row[2], at)
    return [{"user_id": u, "event": n, "day": d, "count": c, "first_at": first, "last_at": last}
            for (u, n, d), (c, first, last) in sorted(days.items())]


_STATEMENTS: dict[str, tuple[Any, Any]] = {}


def _statements(store: Store) -> tuple[Any, Any]:
    """The dialect's two statements, made once: mark ids counted (ON CONFLICT DO NOTHING,
    RETURNING those it inserted), and add to the day counts (ON CONFLICT DO UPDATE)."""
    dialect = store.engine.dialect.name
    if dialect not in _STATEMENTS:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        mark = insert(behaviour_counted).on_conflict_do_nothing().returning(
            behaviour_counted.c.user_id, behaviour_counted.c.event_id)
        add = insert(behaviour)
        taken = add.excluded
        add = add.on_conflict_do_update(
            index_elements=[behaviour.c.user_id, behaviour.c.event, behaviour.c.day],
            set_={"count": behaviour.c.count + taken.count,
                  "first_at": case((taken.first_at < behaviour.c.first_at, taken.first_at),
                                   else_=behaviour.c.first_at),
                  "last_at": case((taken.last_at > behaviour.c.last_at, taken.last_at),
                                  else_=behaviour.c.last_at)})
        _STATEMENTS[dialect] = (mark, add)
    return _STATEMENTS[dialect]


def prune(store: Store, retention_days: int, now: datetime | None = None) -> tuple[int, int]:
    """Drop counts of days older than the retention, and counted ids older than
    :data:`COUNTED_DAYS`; returns how many rows of each went."""
    today = (now or datetime.now(UTC)).date()
    with store.engine.begin() as conn:
        counts = conn.execute(delete(behaviour).where(
            behaviour.c.day < today - timedelta(days=retention_days))).rowcount
        ids = conn.execute(delete(behaviour_counted).where(
            behaviour_counted.c.day < today - timedelta(days=COUNTED_DAYS))).rowcount
    return counts, ids


def of_user(store: Store, user_id: str, since: date | None = None) -> dict[str, tuple[int, datetime]]:
    """Per event name: how many times ``user_id`` did it since ``since`` (every retained day by
    default), and the last time."""
    query = select(behaviour.c.event, func.sum(behaviour.c.count), func.max(behaviour.c.last_at)).where(
        behaviour.c.user_id == user_id)
    if since is not None:
        query = query.where(behaviour.c.day >= since)
    with store.engine.connect() as conn:
        rows = conn.execute(query.group_by(behaviour.c.event)).all()
    return {name: (int(n), last) for name, n, last in rows}
