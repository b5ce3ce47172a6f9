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
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import Insert

from journeys.store.database import Store
from journeys.store.tables import Table, behaviour, behaviour_counted

#: How long an event id is remembered as counted: a copy of an event later than this counts again.
COUNTED_DAYS = 7
#: Rows per statement (SQLite binds at most 32,766 parameters in one).
_CHUNK = 500


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
    with store.engine.begin() as conn:
        new: list[Did] = []
        keys = list(seen)
        for i in range(0, len(keys), _CHUNK):
            rows = [{"user_id": u, "event_id": e, "day": now.date()} for u, e in keys[i:i + _CHUNK]]
            statement = _insert(conn, behaviour_counted).values(rows).on_conflict_do_nothing()
            inserted = conn.execute(statement.returning(behaviour_counted.c.user_id,
                                                        behaviour_counted.c.event_id))
            new += [seen[(u, e)] for u, e in inserted]
        _add(conn, new)
    return len(new)


def _add(conn: Connection, new: Sequence[Did]) -> None:
    """Add ``new`` to the day counts: one upsert per chunk of (user, event, day), in key order
    (two batches at once on PostgreSQL lock rows in the same order: no deadlock)."""
    days: dict[tuple[str, str, date], list[Any]] = {}
    for did in new:
        at = did.time.astimezone(UTC)
        key = (did.user_id, did.name, at.date())
        if (row := days.get(key)) is None:
            days[key] = [1, at, at]
        else:
            row[0], row[1], row[2] = row[0] + 1, min(row[1], at), max(row[2], at)
    keys = sorted(days)
    for i in range(0, len(keys), _CHUNK):
        rows = [{"user_id": u, "event": n, "day": d, "count": days[(u, n, d)][0],
                 "first_at": days[(u, n, d)][1], "last_at": days[(u, n, d)][2]}
                for u, n, d in keys[i:i + _CHUNK]]
        statement = _insert(conn, behaviour).values(rows)
        taken = statement.excluded
        conn.execute(statement.on_conflict_do_update(
            index_elements=[behaviour.c.user_id, behaviour.c.event, behaviour.c.day],
            set_={"count": behaviour.c.count + taken.count,
                  "first_at": case((taken.first_at < behaviour.c.first_at, taken.first_at),
                                   else_=behaviour.c.first_at),
                  "last_at": case((taken.last_at > behaviour.c.last_at, taken.last_at),
                                  else_=behaviour.c.last_at)}))


def _insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT (it has ON CONFLICT on both)."""
    made: Insert = (postgresql.insert(table) if conn.dialect.name == "postgresql"
                    else sqlite.insert(table))
    return made


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
