"""The embedded default: the outbox is the record, and nothing leaves the machine."""

from __future__ import annotations

from activities.providers import Outcome, OutgoingMessage, delivered


class OutboxProvider:
    """Records the rendered message as delivered and sends nothing."""

    name = "outbox"

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        return delivered()
