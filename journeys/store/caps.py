"""Frequency caps per user across journeys (``JOURNEYS_CAPS``), counted over a sliding window.

A send is checked and counted in one serialized transaction per store: two journeys sending
to the same user at the same instant cannot both pass a cap of 1. On SQLite the transaction is
``BEGIN IMMEDIATE`` (it takes the database's write lock before it reads the count); on
PostgreSQL a transaction-scoped advisory lock on the user serializes that user's sends only.
Each counted send is keyed by its idempotency key, so a retried attempt is not counted twice.
The transaction is the same on both (``Store.user_transaction``), and so is every statement:
the caps hold across the processes (workers) that share one database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection

from journeys.language.durations import format_duration, parse_duration
from journeys.language.models import Channel
from journeys.language.problems import UsageError
from journeys.numbers import whole_number
from journeys.store.database import Store
from journeys.store.tables import cap_sends  # one row per counted send

#: The cap that counts every channel together.
ALL = "all"


@dataclass(frozen=True)
class Cap:
    """At most ``limit`` messages on ``channel`` (or ``all``) to a user within ``window``."""

    channel: str
    limit: int
    window: timedelta

    def __str__(self) -> str:
        return f"{self.channel}={self.limit}/{format_duration(self.window)}"

    def applies_to(self, channel: str) -> bool:
        return self.channel in (channel, ALL)

    @property
    def reason(self) -> str:
        """Why a message it holds is not sent (the outbox's reason)."""
        what = "messages" if self.channel == ALL else f"{self.channel} messages"
        return (f"not sent: frequency cap {self} reached ({self.limit} {what} to this user "
                f"in the last {format_duration(self.window)})")


def parse_caps(value: str | None) -> tuple[Cap, ...]:
    """``push=3/1d,email=1/12h,all=5/1d`` as caps; ValueError says what is wrong, in one line."""
    caps: dict[str, Cap] = {}
    for part in (value or "").split(","):
        part = part.strip()
        if not part:
            continue
        channel, eq, rest = part.partition("=")
        count, slash, window = rest.partition("/")
        channel = channel.strip()
        if not eq or not slash:
            raise ValueError(f"'{part}' is not a cap: write channel=count/window, e.g. push=3/1d")
        if channel != ALL and channel not in Channel.__members__:
            raise ValueError(f"'{channel}' is not a channel (channels: {', '.join(Channel)}, or all)")
        if channel in caps:
            raise ValueError(f"'{channel}' is capped twice")
        limit = whole_number(count)
        if limit is None or limit < 1:
            raise ValueError(f"'{part}': the count must be a whole number from 1")
        try:
            length = parse_duration(window.strip())
        except ValueError as exc:
            raise ValueError(f"'{part}': {exc}") from None
        if length <= timedelta(0):
            raise ValueError(f"'{part}': the window must be longer than 0")
        caps[channel] = Cap(channel, limit, length)
    return tuple(caps.values())


def caps_setting(value: str | None) -> tuple[Cap, ...]:
    """The caps of ``JOURNEYS_CAPS``, or a one-line UsageError naming the setting."""
    try:
        return parse_caps(value)
    except ValueError as exc:
        raise UsageError(f"JOURNEYS_CAPS: {exc}") from None


class CapCounter:
    """Checks and counts sends against the caps, atomically, in the store's database."""

    def __init__(self, store: Store, caps: Sequence[Cap]) -> None:
        self.store, self.engine = store, store.engine
        self.caps = tuple(caps)

    def claim(self, user_id: str, channel: str, idempotency_key: str,
              now: datetime | None = None) -> Cap | None:
        """Count this send, unless a cap is reached: then the cap that holds it (nothing counted).

        A key counted already passes again (a retry of the same message).
        """
        caps = [cap for cap in self.caps if cap.applies_to(channel)]
        if not caps:
            return None
        now = (now or datetime.now(UTC)).astimezone(UTC)
        with self.store.user_transaction(user_id) as conn:
            return _claim(conn, caps, user_id, channel, idempotency_key, now,
                          kept=max(cap.window for cap in self.caps))

    def counted(self, user_id: str) -> int:
        """How many sends to the user are counted (for tests and operators)."""
        with self.engine.connect() as conn:
            query = select(func.count()).select_from(cap_sends).where(cap_sends.c.user_id == user_id)
            return int(conn.execute(query).scalar_one())


def _claim(conn: Connection, caps: list[Cap], user_id: str, channel: str, key: str,
           now: datetime, kept: timedelta) -> Cap | None:
    known = conn.execute(select(cap_sends.c.idempotency_key)
                         .where(cap_sends.c.idempotency_key == key)).first()
    if known:
        return None
    # Rows older than every cap's window count for nothing any more: the table stays small.
    conn.execute(delete(cap_sends).where(cap_sends.c.user_id == user_id,
                                         cap_sends.c.sent_at <= now - kept))
    for cap in caps:
        query = select(func.count()).select_from(cap_sends).where(
            cap_sends.c.user_id == user_id, cap_sends.c.sent_at > now - cap.window)
        if cap.channel != ALL:
            query = query.where(cap_sends.c.channel == cap.channel)
        if conn.execute(query).scalar_one() >= cap.limit:
            return cap
    conn.execute(insert(cap_sends).values(idempotency_key=key, user_id=user_id, channel=channel,
                                          sent_at=now))
    return None
