"""Subscriptions: per user and channel, and per topic of a channel, subscribed or not.

A user with no row is subscribed. A marketing message is not sent to a user unsubscribed from
its channel ('' topic) or from its topic on that channel (``unsubscribed``); transactional
messages ignore subscriptions. Every change is kept in ``subscription_changes`` with when, how
and from where, and changes of one user are serialized (``Store.user_transaction``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import insert, or_, select, update

from journeys.store.database import Store
from journeys.store.tables import subscription_changes, subscriptions

#: How a subscription changed: the API, the command line, a link in a message, an SMS reply.
How = Literal["api", "cli", "link", "sms"]


class Subscription(BaseModel):
    """One channel's (``topic`` '') or topic's state for a user."""

    channel: str
    topic: str = ""
    subscribed: bool
    at: datetime


class Change(Subscription):
    """A change of a subscription, as the audit keeps it."""

    how: str
    source: str | None = None


def change(store: Store, user_id: str, channel: str, *, subscribed: bool, how: How,
           topic: str = "", source: str | None = None, at: datetime | None = None) -> bool:
    """Subscribe or unsubscribe the user (to the channel, or one topic of it); the change is
    audited. False if it was so already (nothing written)."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    key = (subscriptions.c.user_id == user_id, subscriptions.c.channel == channel,
           subscriptions.c.topic == topic)
    with store.user_transaction(user_id) as conn:
        current = conn.execute(select(subscriptions.c.subscribed).where(*key)).scalar_one_or_none()
        if (current if current is not None else True) == subscribed:
            return False
        if current is None:
            conn.execute(insert(subscriptions).values(user_id=user_id, channel=channel, topic=topic,
                                                      subscribed=subscribed, at=at))
        else:
            conn.execute(update(subscriptions).where(*key).values(subscribed=subscribed, at=at))
        conn.execute(insert(subscription_changes).values(
            user_id=user_id, channel=channel, topic=topic, subscribed=subscribed, how=how,
            source=source, at=at))
    return True


def unsubscribed(store: Store, user_id: str, channel: str, topic: str | None = None) -> str | None:
    """Why a marketing message on ``channel`` (of ``topic``) may not go to the user, or None."""
    topics = ["", topic] if topic else [""]
    with store.engine.connect() as conn:
        found = conn.execute(select(subscriptions.c.topic).where(
            subscriptions.c.user_id == user_id, subscriptions.c.channel == channel,
            or_(*(subscriptions.c.topic == t for t in topics)),
            subscriptions.c.subscribed.is_(False))).scalars().all()
    if "" in found:
        return f"unsubscribed from {channel}"
    return f"unsubscribed from {channel} topic '{topic}'" if found else None


def of_user(store: Store, user_id: str) -> list[Subscription]:
    """The user's recorded subscriptions (channel, then topic); channels not listed: subscribed."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(subscriptions).where(subscriptions.c.user_id == user_id)
                            .order_by(subscriptions.c.channel, subscriptions.c.topic)).mappings().all()
    return [Subscription(channel=r["channel"], topic=r["topic"], subscribed=r["subscribed"],
                         at=_utc(r["at"])) for r in rows]


def changes(store: Store, user_id: str) -> list[Change]:
    """Every change of the user's subscriptions, oldest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(subscription_changes).where(
            subscription_changes.c.user_id == user_id).order_by(subscription_changes.c.id)).mappings().all()
    return [Change(channel=r["channel"], topic=r["topic"], subscribed=r["subscribed"], at=_utc(r["at"]),
                   how=r["how"], source=r["source"]) for r in rows]


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
