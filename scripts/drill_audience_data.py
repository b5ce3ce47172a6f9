"""The audience drill's data: its journeys (a broadcast to a segment, an event-triggered ping)
and a year of behaviour for its profiles, seeded straight into the store (scripts.drill_audience).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, text

from journeys.store.database import Store
from journeys.store.tables import behaviour, profiles

BROADCAST, PING_JOURNEY = "broadcast", "ping"
CATALOG = """events:
  Viewed Product: {properties: [product_name]}
  Charged: {properties: [amount]}
  Ping: {properties: []}
"""
JOURNEYS = {
    BROADCAST: """id: broadcast
name: Drill broadcast
entry: lapsed
reentry: after_exit
nodes:
  - id: lapsed
    type: segment
    profile: [{property: plan, is_not: pro}]
    did: [{event: Viewed Product, at_least: 2, in_last: 30d}]
    did_not: [{event: Charged, in_last: 30d}]
    schedule: {every: 1d, at: "04:00"}
    next: push
  - id: push
    type: engagement
    channel: push
    message: {body: "We miss you, {{ profile.first_name | default('friend') }}"}
""",
    PING_JOURNEY: """id: ping
name: Drill ping
entry: pinged
nodes:
  - id: pinged
    type: action
    event: Ping
    next: push
  - id: push
    type: engagement
    channel: push
    message: {body: "Pong"}
"""}


def seed(store: Store, n: int, active_days: int) -> tuple[int, int]:
    """The profiles and a year of behaviour; returns (behaviour rows, active user-days)."""
    rng, today = random.Random(7), datetime.now(UTC).replace(microsecond=0)
    rows: list[dict[str, object]] = []
    days = 0
    with store.engine.begin() as conn:
        conn.execute(insert(profiles), [{"user_id": f"u{i:06d}", "updated_at": today, "properties": {
            "plan": "free", "first_name": f"User {i}", "timezone": "Europe/Paris"}} for i in range(n)])
    for i in range(n):
        user = f"u{i:06d}"
        back = set(rng.sample(range(31, 365), active_days))
        if i % 2 == 0:
            back |= {rng.randrange(0, 30), rng.randrange(0, 30)}
        for ago in back:
            at = today - timedelta(days=ago)
            rows.append({"user_id": user, "event": "Viewed Product", "day": at.date(),
                         "count": 1 if ago < 30 else rng.randint(1, 3), "first_at": at, "last_at": at})
        if i % 40 == 0:  # 1 in 20 of the even users bought lately
            at = today - timedelta(days=rng.randrange(0, 30))
            rows.append({"user_id": user, "event": "Charged", "day": at.date(), "count": 1,
                         "first_at": at, "last_at": at})
        days += len(back)
        if len(rows) >= 20_000:
            _insert(store, rows)
            rows = []
    _insert(store, rows)
    with store.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(behaviour)).scalar_one()
    return int(total), days


def _insert(store: Store, rows: list[dict[str, object]]) -> None:
    # Rows of one user and day can meet (a view in the last 30 days on an older active day): merged.
    merged: dict[tuple[object, object, object], dict[str, object]] = {}
    for row in rows:
        key = (row["user_id"], row["event"], row["day"])
        if key in merged:
            merged[key]["count"] = int(merged[key]["count"]) + int(row["count"])  # type: ignore[call-overload]
        else:
            merged[key] = row
    if merged:
        with store.engine.begin() as conn:
            conn.execute(insert(behaviour), list(merged.values()))


def behaviour_bytes(store: Store, data_dir: Path) -> int:
    """Bytes the behaviour table and its indexes take."""
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "postgresql":
            return int(conn.execute(text("SELECT pg_total_relation_size('behaviour')")).scalar_one())
        try:
            return int(conn.execute(text(
                "SELECT SUM(pgsize) FROM dbstat WHERE name IN ('behaviour', 'behaviour_by_event', "
                "'sqlite_autoindex_behaviour_1')")).scalar_one() or 0)
        except Exception:  # no dbstat in this SQLite: the file's growth is all we know
            return -1
