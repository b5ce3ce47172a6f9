"""The online channels (in-app, web pop-up, app inbox): a per-user inbox the app reads.

Always configured: the inbox is a table of the store. ``python starter.py inbox USER`` lists it.
"""

from __future__ import annotations

import asyncio

from activities.providers import Outcome, OutgoingMessage, delivered
from journeys.language.models import Channel
from journeys.settings import Settings
from journeys.store import inbox
from journeys.store.database import Store


class InboxProvider:
    """Writes the message into the user's inbox, once per idempotency key."""

    name = "inbox"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        row_id = await asyncio.to_thread(
            inbox.add, self.store, message.idempotency_key, message.user_id, message.journey_id,
            message.node_id, message.channel.value, message.content)
        return delivered(str(row_id))


def missing(settings: Settings, channel: Channel) -> list[str]:
    return []


def build(settings: Settings, store: Store, channel: Channel) -> InboxProvider:
    return InboxProvider(store)
