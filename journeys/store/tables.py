"""The store's tables: profiles, the outbox and inbox, event receipts, entries, outcomes,
IntelliNODE choices and settings, frequency-cap sends. One metadata for all of them; the
migrations (journeys/store/migrations) create and change them.

A change here needs a migration too (``alembic revision --autogenerate -m ...`` from the
repository's root); tests/test_store_backends.py checks the two agree.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Date, DateTime, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class Moment(TypeDecorator[datetime]):
    """A moment, stored in UTC and read back timezone-aware in UTC on every database: PostgreSQL
    keeps it as timestamptz; SQLite keeps no zone (its text is UTC, as earlier releases wrote it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None and value.tzinfo is not None else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if not isinstance(value, datetime):
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()
#: Workflow ids and the idempotency keys made from them: a keyed id holds an escaped user and
#: key of 200 characters each (migration 0002 widened these columns).
LONG_ID = 2000
_metadata = metadata  # (its name before the migrations)

profiles = Table(
    "profiles", metadata,
    Column("user_id", String(200), primary_key=True),
    Column("properties", JSON, nullable=False),
    Column("updated_at", Moment(), nullable=False),
)
outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(LONG_ID), nullable=False, unique=True),
    Column("journey_id", String(200), nullable=False, index=True),
    Column("user_id", String(200), nullable=False, index=True),
    Column("workflow_id", String(LONG_ID), nullable=False),
    Column("node_id", String(100), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", Text),
    Column("content", JSON, nullable=False),
    Column("event_name", String(200)),
    Column("event_id", String(200)),
    Column("provider", String(50)),
    Column("provider_message_id", String(200), index=True),  # the vendor's id of what it accepted
    Column("locale", String(35)),  # the message's version: its locale key, or "default" (0008)
    Column("variant", String(50)),  # the content variant it was, if its node has variants (0008)
    Column("created_at", Moment(), nullable=False),
    Column("updated_at", Moment(), nullable=False),
)
#: Messages of the online channels (in-app, web pop-up, app inbox), for the app to read.
inbox = Table(
    "inbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(LONG_ID), nullable=False, unique=True),
    Column("user_id", String(200), nullable=False, index=True),
    Column("journey_id", String(200), nullable=False),
    Column("node_id", String(100), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("content", JSON, nullable=False),
    Column("created_at", Moment(), nullable=False),
)
#: Event ids a journey has processed for a user: an event id counts once per user and journey,
#: across runs (re-entry) and processes. ``state`` is a router's claim until Temporal has it.
event_receipts = Table(
    "event_receipts", metadata,
    Column("journey_id", String(200), primary_key=True),
    Column("user_id", String(200), primary_key=True),
    Column("event_id", String(200), primary_key=True),
    Column("state", String(40), nullable=False),  # "done", or the claim token of a router
    Column("created_at", Moment(), nullable=False),
    #: An entry event, kept for its journey's activities to read (interpreter 4, 0009).
    Column("event", JSON),
)
#: Each entry into a journey, recorded where it starts (the router): the funnel's first number.
entries = Table(
    "entries", metadata,
    Column("workflow_id", String(LONG_ID), primary_key=True),
    Column("run_id", String(64), primary_key=True),
    Column("journey_id", String(200), nullable=False, index=True),
    Column("user_id", String(200), nullable=False),
    Column("held_out", Boolean, nullable=False),  # in the journey's control group
    Column("at", Moment(), nullable=False),
)
#: What came of each entry, once per entry and kind (journeys.store.outcomes): a conversion, a time-out.
outcomes = Table(
    "outcomes", metadata,
    Column("journey_id", String(200), primary_key=True),
    Column("run_key", String(64), primary_key=True),
    Column("kind", String(20), primary_key=True),  # "converted", "timed_out" or "ended"
    Column("user_id", String(200), nullable=False, index=True),
    Column("workflow_id", String(LONG_ID), nullable=False),
    Column("goal", String(200)),
    Column("node_id", String(200)),
    Column("paths", JSON, nullable=False),  # the IntelliNODE paths taken: [{"node", "path"}]
    Column("held_out", Boolean, nullable=False),  # the user is in the journey's control group
    Column("at", Moment(), nullable=False),
    Column("reason", Text),  # "ended": why the user left (exit event, timeout...), null if finished
    Column("nodes", JSON),  # "ended": the nodes the user went through, in order
)
#: The IntelliNODE path each entry took (journeys.store.intellinode), once per entry and node.
path_choices = Table(
    "path_choices", metadata,
    Column("journey_id", String(200), primary_key=True),
    Column("run_key", String(64), primary_key=True),
    Column("node_id", String(200), primary_key=True),
    Column("path", String(200), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("held_out", Boolean, nullable=False),  # the control group does not teach the bandit
    Column("at", Moment(), nullable=False, index=True),
)
#: Live changes to an IntelliNODE (``starter.py intellinode``): the latest one applies.
path_settings = Table(
    "path_settings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("journey_id", String(200), nullable=False),
    Column("node_id", String(200), nullable=False),
    Column("percent", JSON),  # {"path": percent}, or null
    Column("winner", String(200)),  # everyone down this path, or null
    Column("at", Moment(), nullable=False),
)
#: One row per send counted against the frequency caps (journeys.store.caps).
cap_sends = Table(
    "cap_sends", metadata,
    Column("idempotency_key", String(LONG_ID), primary_key=True),
    Column("user_id", String(200), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("sent_at", Moment(), nullable=False),
    Index("ix_cap_sends_user_sent", "user_id", "sent_at"),
)
def address_digest(address: str) -> str:
    """An address (a push token, a phone, a URL) as ``send_addresses`` keeps it."""
    return hashlib.sha256(address.encode()).hexdigest()


#: What each address of a message (a push token, a phone, a URL; by digest) answered, across
#: attempts: a retry skips the addresses that answered, and counts the tries left unanswered.
send_addresses = Table(
    "send_addresses", metadata,
    Column("idempotency_key", String(LONG_ID), primary_key=True),
    Column("address", String(64), primary_key=True),  # sha256 of the address, hex
    Column("status", String(20), nullable=False),  # delivered, failed, unreachable, sent (no answer)
    Column("unanswered", Integer, nullable=False),  # requests that left and got no answer
    Column("provider_message_id", String(200)),
    Column("updated_at", Moment(), nullable=False),
    Index("ix_send_addresses_address", "address"),  # who a number that writes back is
)
#: Every event a version of a journey listened to (exit_when, waits, goals), by journey id, kept
#: when its file changes: runs that entered an earlier version keep getting their events.
journey_listens = Table(
    "journey_listens", metadata,
    Column("journey_id", String(200), primary_key=True),
    Column("event_name", String(200), primary_key=True),
    Column("at", Moment(), nullable=False),  # when a version listening to it was first read
)

#: Every version of every journey a process read (never forgotten): a user's run holds its
#: journey's id and version, and reads the definition here, so no history carries the whole
#: definition (journeys.versions).
journey_versions = Table(
    "journey_versions", metadata,
    Column("journey_id", String(200), primary_key=True),
    Column("version", String(64), primary_key=True),  # the definition's content digest
    Column("definition", Text, nullable=False),  # the definition, as JSON
    Column("at", Moment(), nullable=False),  # when a process first read it
)

#: Each user's subscription to a channel ('' topic: the channel as a whole) or to one topic of it
#: (journeys.store.subscriptions): a marketing message is not sent to a user unsubscribed from
#: its channel or its topic. No row: subscribed.
subscriptions = Table(
    "subscriptions", metadata,
    Column("user_id", String(200), primary_key=True),
    Column("channel", String(20), primary_key=True),
    Column("topic", String(100), primary_key=True),
    Column("subscribed", Boolean, nullable=False),
    Column("at", Moment(), nullable=False),  # when it last changed
)
#: Every change of a subscription, never removed: when, how (api, cli, link, sms, ...) and from
#: where (an operator, an API client's address, an inbound message's number: what the way in knows).
subscription_changes = Table(
    "subscription_changes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(200), nullable=False, index=True),
    Column("channel", String(20), nullable=False),
    Column("topic", String(100), nullable=False),
    Column("subscribed", Boolean, nullable=False),
    Column("how", String(20), nullable=False),
    Column("source", String(200)),
    Column("at", Moment(), nullable=False),
)
#: Secrets every process sharing the store agrees on, made once (journeys.store.secrets): the
#: key of the links in messages, unless JOURNEYS_LINK_SECRET gives one.
secrets = Table(
    "secrets", metadata,
    Column("name", String(100), primary_key=True),
    Column("value", String(200), nullable=False),  # hex
    Column("at", Moment(), nullable=False),
)
#: What users did with messages (journeys.store.engagements): one row per message (its
#: tracking id) and kind (opened, clicked, unsubscribed), counted once however often it happens.
engagements = Table(
    "engagements", metadata,
    Column("message", String(32), primary_key=True),
    Column("kind", String(20), primary_key=True),
    Column("journey_id", String(200), nullable=False, index=True),
    Column("node_id", String(100), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("machine", Boolean, nullable=False),  # every one so far a machine's (a mail proxy's open)
    Column("count", Integer, nullable=False),
    Column("first_at", Moment(), nullable=False),
    Column("last_at", Moment(), nullable=False),
)
#: Addresses that bounced for good (an SMTP 5xx to RCPT, Twilio 21211 or 21610), by channel and
#: digest (journeys.store.bounces): later messages to them are unreachable without a call.
bounces = Table(
    "bounces", metadata,
    Column("channel", String(20), primary_key=True),
    Column("address", String(64), primary_key=True),  # sha256 of the address, hex
    Column("reason", String(200), nullable=False),
    Column("at", Moment(), nullable=False),
)
#: What users did, kept small (journeys.store.behaviour): per user, event name and UTC day, how
#: many times and the first and last time; not the events themselves. Segments read it
#: (journeys.audience): by user (the primary key) and by event and day (``behaviour_by_event``).
behaviour = Table(
    "behaviour", metadata,
    Column("user_id", String(200), primary_key=True),
    Column("event", String(200), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("first_at", Moment(), nullable=False),
    Column("last_at", Moment(), nullable=False),
    Index("behaviour_by_event", "event", "day", "user_id"),
)
#: The event ids counted lately, so that a copy of an event (a client's retry) counts once; kept
#: for journeys.store.behaviour.COUNTED_DAYS days (by the day it was counted) and pruned with the rest.
behaviour_counted = Table(
    "behaviour_counted", metadata,
    Column("user_id", String(200), primary_key=True),
    Column("event_id", String(200), primary_key=True),
    Column("day", Date, nullable=False, index=True),
)
#: Catalogs of items keyed by id (products, stores, offers: journeys.store.catalogs), read by
#: ``catalog('products', id)`` in templates when a message is sent.
catalog_items = Table(
    "catalog_items", metadata,
    Column("catalog", String(100), primary_key=True),
    Column("item_id", String(200), primary_key=True),
    Column("item", JSON, nullable=False),
    Column("updated_at", Moment(), nullable=False),
)
#: Live changes to an engagement node's content variants (``starter.py variants``): the latest
#: applies; a winner sends everyone that variant, none goes back to the weights.
variant_settings = Table(
    "variant_settings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("journey_id", String(200), nullable=False),
    Column("node_id", String(200), nullable=False),
    Column("winner", String(50)),
    Column("at", Moment(), nullable=False),
    Index("variant_settings_by_node", "journey_id", "node_id", "id"),
)
