"""The in-app inbox (table ``inbox``): what in_app, web_popup and app_inbox messages leave for the
user's app to show. A message is put there once per idempotency key, however often its send is
retried; reading never removes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from journeys.store.database import Store, aware
from journeys.store.tables import inbox


class InboxMessage(BaseModel):
    """One message of a user's in-app inbox."""

    id: int
    journey_id: str
    node_id: str
    channel: str
    content: dict[str, str]
    created_at: datetime
    idempotency_key: str = ""  # (its message_id, journeys.events.tracking_id, is what the app reports)


def add(store: Store, idempotency_key: str, user_id: str, journey_id: str, node_id: str,
        channel: str, content: dict[str, str]) -> int:
    """Put a message in the user's inbox once per key; returns its id."""
    try:
        with store.engine.begin() as conn:
            result = conn.execute(insert(inbox).values(
                idempotency_key=idempotency_key, user_id=user_id, journey_id=journey_id,
                node_id=node_id, channel=channel, content=content, created_at=datetime.now(UTC)))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])
    except IntegrityError:  # a retried send: the message is there already
        with store.engine.connect() as conn:
            return int(conn.execute(select(inbox.c.id).where(
                inbox.c.idempotency_key == idempotency_key)).scalar_one())


def messages(store: Store, user_id: str) -> list[InboxMessage]:
    """The user's inbox, oldest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(inbox).where(inbox.c.user_id == user_id).order_by(inbox.c.id))
        return [InboxMessage.model_validate({
            **row._mapping,
            "content": json.loads(row.content) if isinstance(row.content, str) else row.content,
            "created_at": aware(row.created_at)}) for row in rows]
