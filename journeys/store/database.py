"""Profiles and the outbox, in SQLite by default or PostgreSQL (same code, another URL:
``postgresql+psycopg://user:password@host/db``); the tables are journeys.store.tables, created and
upgraded by the migrations (journeys.store.migrations) when a store opens its database.

The outbox has a unique idempotency key, so a retried or replayed send is recorded, and so
delivered, once.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import bindparam, create_engine, event, insert, select, text, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError

from journeys.language.limits import MAX_PROFILE_BYTES, check_properties
from journeys.language.problems import UsageError
from journeys.store import migrations
from journeys.store.tables import entries, event_receipts, outbox, profiles, send_addresses

OutboxStatus = Literal["pending", "delivered", "skipped", "failed", "unreachable", "cancelled",
                       "capped", "dropped_quiet_hours", "held_out", "unknown", "kept", "unsubscribed",
                       "delivered_to_device", "undelivered"]

#: Whether an event id was seen before for a journey and user: "new" (this router claims it
#: first), "earlier" (a copy was claimed and not yet routed: in flight elsewhere, or its router
#: died; it may have reached Temporal) or "done" (routed: a copy now is a duplicate).
ClaimState = Literal["new", "earlier", "done"]
#: A claim's state until the event is routed ("done"). Rows of earlier releases hold a token.
CLAIMED = "claimed"


# Built once: constructing a statement costs SQLAlchemy five times what SQLite spends running it,
# and every event routed to a journey claims and settles a receipt.
_RECEIPT = (event_receipts.c.journey_id == bindparam("j"), event_receipts.c.user_id == bindparam("u"),
            event_receipts.c.event_id == bindparam("e"))
_CLAIM = insert(event_receipts).values(journey_id=bindparam("j"), user_id=bindparam("u"),
                                       event_id=bindparam("e"), state=CLAIMED,
                                       created_at=bindparam("now"), event=bindparam("event"))
_CLAIMED = select(event_receipts.c.state).where(*_RECEIPT)
_KEPT = select(event_receipts.c.event).where(*_RECEIPT)
_SETTLE = update(event_receipts).where(*_RECEIPT).values(state="done")
# And a send's: its record and the profile, the claim, the finish.
_MESSAGE = select(outbox).where(outbox.c.idempotency_key == bindparam("k"))
_PROFILE = select(profiles.c.properties).where(profiles.c.user_id == bindparam("u"))
_OUTBOX_INSERT = insert(outbox)
_FINISH = update(outbox).where(outbox.c.idempotency_key == bindparam("k")).values(
    status=bindparam("status"), reason=bindparam("reason"), provider=bindparam("provider"),
    provider_message_id=bindparam("provider_message_id"), updated_at=bindparam("now"))


_ENTRY = insert(entries)
#: How long a SQLite connection waits for another's write lock before it fails.
BUSY_TIMEOUT_MS = 10_000


class OutboxRow(BaseModel):
    """One message, as the outbox records it."""

    idempotency_key: str
    journey_id: str
    user_id: str
    workflow_id: str
    node_id: str
    channel: str
    status: OutboxStatus
    reason: str | None = None
    content: dict[str, str] = Field(default_factory=dict)
    event_name: str | None = None
    event_id: str | None = None
    provider: str | None = None
    provider_message_id: str | None = None
    locale: str | None = None  # the version sent: its locale key, or "default"
    variant: str | None = None  # the content variant, if its node has variants
    created_at: datetime | None = None


class AddressMark(BaseModel):
    """What one address of a message (by digest) answered: delivered, failed, unreachable,
    ``answered`` (retryable) or ``sent`` (no answer to the last request)."""

    status: str
    unanswered: int = 0  # requests that left and got no answer
    provider_message_id: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    """Profiles and the outbox behind one SQLAlchemy engine. Thread-safe; one per process."""

    def __init__(self, url: str) -> None:
        """Open (and create) the store; a URL that cannot work is a one-line UsageError."""
        shown = _hide_password(url)
        try:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            # A server's connections may die under the pool (a restart): checked out alive.
            self.engine: Engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        except ArgumentError:
            raise UsageError(f"JOURNEYS_DATABASE_URL: '{shown}' is not a database URL "
                             "(e.g. sqlite:///path/journeys.db)") from None
        except (NoSuchModuleError, ImportError) as exc:
            raise UsageError(f"JOURNEYS_DATABASE_URL: no driver for '{shown}' is installed "
                             f"({exc})") from None
        except OSError as exc:
            raise UsageError(f"cannot create the data directory for '{shown}': {exc}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            with self.engine.connect() as conn:  # at HEAD (every open but the first): one query
                current = migrations.at_head(conn)
            if not current:
                with self.user_transaction(_SCHEMA_LOCK) as conn:  # one process at a time
                    migrations.upgrade(conn)
        except OperationalError as exc:
            reason = " ".join(str(exc.orig).split())  # one line (psycopg's run over several)
            raise UsageError(f"cannot open the store at '{shown}': {reason}") from None

    # --- profiles ---------------------------------------------------------------------------
    def profile(self, user_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(profiles.c.properties).where(profiles.c.user_id == user_id)).first()
        return dict(row[0]) if row else {}

    def update_profile(self, user_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        """Merge ``properties`` into the profile (created if new); returns the whole profile.

        Atomic: concurrent merges into one profile (two events at once) each keep their keys.
        Raises LimitExceeded, writing nothing, if the merged profile would be over the limits.
        """
        with self.user_transaction(user_id) as conn:
            row = conn.execute(select(profiles.c.properties).where(profiles.c.user_id == user_id)).first()
            merged = {**(row[0] if row else {}), **properties}
            check_properties(merged, f"the profile of user '{user_id}'", MAX_PROFILE_BYTES)
            values = {"properties": merged, "updated_at": _now()}
            if row:
                conn.execute(update(profiles).where(profiles.c.user_id == user_id).values(**values))
            else:
                conn.execute(insert(profiles).values(user_id=user_id, **values))
        return merged

    def remove_from_profile(self, user_id: str, property: str, value: Any) -> None:
        """Drop ``value`` from the list ``property`` (a dead push token or subscription)."""
        with self.user_transaction(user_id) as conn:
            row = conn.execute(select(profiles.c.properties).where(profiles.c.user_id == user_id)).first()
            current: dict[str, Any] = dict(row[0]) if row else {}
            items = current.get(property)
            if not isinstance(items, list) or value not in items:
                return
            properties = {**current, property: [item for item in items if item != value]}
            conn.execute(update(profiles).where(profiles.c.user_id == user_id)
                         .values(properties=properties, updated_at=_now()))

    @contextmanager
    def user_transaction(self, user_id: str) -> Iterator[Connection]:
        """A transaction no other ``user_transaction`` of this user interleaves with.

        Read-modify-write of one user's rows (the profile merge, frequency caps) stays whole:
        on SQLite ``BEGIN IMMEDIATE`` takes the write lock before the first read (others wait,
        busy_timeout); on PostgreSQL a transaction-scoped advisory lock serializes that user only.
        """
        with self.engine.connect() as conn:
            dialect = conn.dialect.name
            if dialect == "sqlite":  # (pysqlite begins no transaction of its own before it)
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif dialect == "postgresql":
                key = int.from_bytes(hashlib.sha256(user_id.encode()).digest()[:8], "big", signed=True)
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            else:  # pragma: no cover - another database needs its own lock here
                raise NotImplementedError(f"per-user transactions on {dialect}")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    # --- event receipts ---------------------------------------------------------------------
    def claim_event(self, journey_id: str, user_id: str, event_id: str,
                    event: dict[str, Any] | None = None) -> ClaimState:
        """Claim this event for this journey before it is routed (see :data:`ClaimState`).
        ``event``: an entry event (as JSON), kept with a new claim for the journey's activities
        to read (:meth:`kept_event`), in the same write.

        A claim never hides an event: only "done" makes a copy a duplicate. A copy of an event
        claimed "earlier" is routed again; the journey's own deduplication (a running journey
        ignores an event id it has seen; a start finds the running journey) and the router's
        look at the run it may have entered keep it to one entry.
        """
        key = {"j": journey_id, "u": user_id, "e": event_id}
        try:
            with self.engine.begin() as conn:
                conn.execute(_CLAIM, {**key, "now": _now(), "event": event})
            return "new"
        except IntegrityError:
            pass
        with self.engine.connect() as conn:
            state = conn.execute(_CLAIMED, key).scalar()
        return "done" if state == "done" else "earlier"

    def kept_event(self, journey_id: str, user_id: str, event_id: str) -> dict[str, Any] | None:
        """The entry event a claim kept, as JSON (None: none kept)."""
        with self.engine.connect() as conn:
            return _kept(conn, journey_id, user_id, event_id)

    def settle_event(self, journey_id: str, user_id: str, event_id: str) -> None:
        """Record the event as routed: from now on a copy of it is a duplicate. (A routing that
        failed settles nothing: its claim stays "earlier", and a copy is routed again.)"""
        with self.engine.begin() as conn:
            conn.execute(_SETTLE, {"j": journey_id, "u": user_id, "e": event_id})

    def check_writable(self, wait: float) -> None:
        """Raise if the store cannot take a write within ``wait`` seconds (down, or locked by
        another process): a readiness probe. Nothing is written."""
        with self.engine.connect() as conn:
            if conn.dialect.name != "sqlite":
                conn.execute(text("SELECT 1"))
                return
            conn.exec_driver_sql(f"PRAGMA busy_timeout={max(1, int(wait * 1000))}")
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, released at once
                conn.exec_driver_sql("ROLLBACK")
            finally:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    # --- outbox -----------------------------------------------------------------------------
    def outbox_get(self, idempotency_key: str) -> OutboxRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(outbox).where(outbox.c.idempotency_key == idempotency_key)).first()
        return _row(row._mapping) if row else None

    def record_entry(self, journey_id: str, workflow_id: str, run_id: str, user_id: str,
                     held_out: bool) -> None:
        """Count an entry (once: the run id makes it one)."""
        values = {"journey_id": journey_id, "workflow_id": workflow_id, "run_id": run_id,
                  "user_id": user_id, "held_out": held_out, "at": _now()}
        try:
            with self.engine.begin() as conn:
                conn.execute(_ENTRY, values)
        except IntegrityError:
            pass

    def send_context(self, idempotency_key: str, user_id: str, kept: tuple[str, str] | None = None
                     ) -> tuple[OutboxRow | None, dict[str, Any], dict[str, Any] | None]:
        """What a send reads first, on one connection: the message's record (a retry or a replay
        finds it), the user's profile, and the event kept for ``kept`` (journey, event id)."""
        with self.engine.connect() as conn:
            row = conn.execute(_MESSAGE, {"k": idempotency_key}).first()
            found = conn.execute(_PROFILE, {"u": user_id}).first()
            event = _kept(conn, kept[0], user_id, kept[1]) if kept else None
        return (_row(row._mapping) if row else None), (dict(found[0]) if found else {}), event

    def outbox_claim(self, row: OutboxRow) -> tuple[OutboxRow, bool]:
        """Insert ``row`` unless its key is recorded already; returns (the stored row, inserted)."""
        now = _now()
        values = row.model_dump(exclude={"created_at"}) | {"created_at": now, "updated_at": now}
        try:
            with self.engine.begin() as conn:
                conn.execute(_OUTBOX_INSERT, values)
        except IntegrityError:
            existing = self.outbox_get(row.idempotency_key)
            if existing is None:  # pragma: no cover - a different constraint failed
                raise
            return existing, False
        return row.model_copy(update={"created_at": now}), True

    def outbox_finish(self, idempotency_key: str, status: OutboxStatus, *,
                      reason: str | None = None, provider: str | None = None,
                      provider_message_id: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(_FINISH, {"k": idempotency_key, "status": status, "reason": reason,
                                   "provider": provider, "provider_message_id": provider_message_id,
                                   "now": _now()})

    def outbox_cancel(self, row: OutboxRow) -> OutboxRow:
        """Mark a message cancelled unless it went out already (or record it cancelled)."""
        stored, inserted = self.outbox_claim(row.model_copy(update={"status": "cancelled"}))
        if not inserted and stored.status == "pending":
            with self.engine.begin() as conn:
                conn.execute(update(outbox).where(outbox.c.idempotency_key == row.idempotency_key)
                             .where(outbox.c.status == "pending")
                             .values(status="cancelled", reason=row.reason, updated_at=_now()))
            stored = self.outbox_get(row.idempotency_key) or stored
        return stored

    def send_marks(self, idempotency_key: str) -> dict[str, AddressMark]:
        """What each address of a message answered on earlier attempts, by address digest."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(send_addresses).where(
                send_addresses.c.idempotency_key == idempotency_key)).all()
        return {row.address: AddressMark(status=row.status, unanswered=row.unanswered,
                                         provider_message_id=row.provider_message_id) for row in rows}

    def send_mark(self, idempotency_key: str, marks: dict[str, AddressMark]) -> None:
        """Record what addresses answered (one attempt of a message at a time writes these)."""
        if not marks:
            return
        now = _now()
        where = send_addresses.c.idempotency_key == idempotency_key
        with self.engine.begin() as conn:
            for address, mark in marks.items():
                values = {"status": mark.status[:20], "unanswered": mark.unanswered,
                          "provider_message_id": (mark.provider_message_id or "")[:200] or None,
                          "updated_at": now}
                done = conn.execute(update(send_addresses).where(
                    where, send_addresses.c.address == address).values(**values))
                if done.rowcount == 0:
                    conn.execute(insert(send_addresses).values(
                        idempotency_key=idempotency_key, address=address, **values))

    def outbox_list(self, user_id: str | None = None, journey_id: str | None = None,
                    workflow_id: str | None = None) -> list[OutboxRow]:
        query = select(outbox).order_by(outbox.c.id)
        if user_id:
            query = query.where(outbox.c.user_id == user_id)
        if journey_id:
            query = query.where(outbox.c.journey_id == journey_id)
        if workflow_id:
            query = query.where(outbox.c.workflow_id == workflow_id)
        with self.engine.connect() as conn:
            return [_row(r._mapping) for r in conn.execute(query)]


def _kept(conn: Connection, journey_id: str, user_id: str, event_id: str) -> dict[str, Any] | None:
    found = conn.execute(_KEPT, {"j": journey_id, "u": user_id, "e": event_id}).scalar()
    return json.loads(found) if isinstance(found, str) else found  # (JSON as text: some drivers)


def _row(mapping: Any) -> OutboxRow:
    data = dict(mapping)
    if isinstance(data.get("content"), str):  # some drivers hand JSON back as text
        data["content"] = json.loads(data["content"])
    data["created_at"] = aware(data.get("created_at"))
    return OutboxRow.model_validate({k: v for k, v in data.items() if k in OutboxRow.model_fields})


#: The per-user lock key under which a store creates or upgrades its tables: two processes
#: opening one new database at once (a worker and a command) must not both migrate it.
_SCHEMA_LOCK = "\x00schema"


def aware(moment: Any) -> Any:
    """A datetime read back from the store, in UTC: SQLite hands back naive ones (written in UTC)."""
    return moment.replace(tzinfo=UTC) if isinstance(moment, datetime) and moment.tzinfo is None else moment


def _hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # Switching a new database to WAL needs it alone, and SQLite answers "locked" at once
    # rather than wait (two processes opening a new database together): try again a while.
    for attempt in range(100):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError:
            if attempt == 99:
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
