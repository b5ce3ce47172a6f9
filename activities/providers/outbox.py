"""The embedded default: the outbox is the record, and nothing leaves the machine."""

from __future__ import annotations

from activities.providers import Outcome, OutgoingMessage


class OutboxProvider:
    """Keeps the rendered message in the outbox and sends nothing: its row reads ``kept`` (no
    vendor configured for the channel), never ``delivered``, which would say someone got it."""

    name = "outbox"

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        return Outcome(status="kept")
