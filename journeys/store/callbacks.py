"""What vendors tell afterwards: a message's fate on the handset (Twilio's status callbacks),
and who a number that writes back is (Twilio's inbound messages, STOP and START)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update

from journeys.store.database import OutboxStatus, Store
from journeys.store.tables import address_digest, outbox, send_addresses

#: What a delivered message may become once the vendor knows more.
AFTER_DELIVERY: frozenset[str] = frozenset({"delivered", "delivered_to_device", "undelivered"})


def settle_later(store: Store, provider_message_id: str, status: OutboxStatus,
                 reason: str | None = None) -> str | None:
    """Move the message the vendor knows as ``provider_message_id`` from delivered (accepted)
    to ``status``; the journey it belongs to, or None if no such message was delivered."""
    with store.engine.begin() as conn:
        row = conn.execute(select(outbox.c.idempotency_key, outbox.c.journey_id).where(
            outbox.c.provider_message_id == provider_message_id,
            outbox.c.status.in_(AFTER_DELIVERY))).first()
        if row is None:
            return None
        conn.execute(update(outbox).where(outbox.c.idempotency_key == row.idempotency_key).values(
            status=status, reason=reason, updated_at=datetime.now(UTC)))
    return str(row.journey_id)


def user_of_address(store: Store, address: str) -> str | None:
    """The user last messaged at ``address`` (a phone number as it was sent to), if any."""
    digest = address_digest(address)  # as the send's ledger keeps it
    with store.engine.connect() as conn:
        found = conn.execute(
            select(outbox.c.user_id).join(send_addresses, send_addresses.c.idempotency_key
                                          == outbox.c.idempotency_key)
            .where(send_addresses.c.address == digest).order_by(outbox.c.id.desc()).limit(1)).first()
    return str(found.user_id) if found else None
