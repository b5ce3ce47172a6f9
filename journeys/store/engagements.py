"""What users did with their messages: opened, clicked, unsubscribed (table ``engagements``).

Counted once per message and kind (unique opens and clicks), however often it happens; the
first one that a person (not a machine) did is what a journey hears of, as an event of the user
(``Message Opened``, ``Message Clicked``). An open in the first seconds after the message was
sent is a mail proxy's (Apple Mail Privacy Protection, Gmail's image proxy fetch every image):
kept as a machine's, not counted as opened until a later one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import func, insert, select, update

from journeys.store.database import Store
from journeys.store.tables import engagements

Kind = Literal["opened", "clicked", "unsubscribed"]
#: The event a person's first engagement of each kind is, for the user's journeys
#: (journeys.events.MESSAGE_OPENED and MESSAGE_CLICKED: the store imports no events).
EVENTS: dict[str, str] = {"opened": "Message Opened", "clicked": "Message Clicked"}


def record(store: Store, message: str, kind: Kind, *, journey_id: str, node_id: str, user_id: str,
           channel: str, machine: bool = False, at: datetime | None = None) -> bool:
    """Count one engagement with ``message``; True if it is the first by a person of its kind
    (the one a journey hears of)."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    key = (engagements.c.message == message, engagements.c.kind == kind)
    with store.user_transaction(user_id) as conn:
        before = conn.execute(select(engagements.c.machine).where(*key)).scalar_one_or_none()
        if before is None:
            conn.execute(insert(engagements).values(
                message=message, kind=kind, journey_id=journey_id, node_id=node_id, user_id=user_id,
                channel=channel, machine=machine, count=1, first_at=at, last_at=at))
            return not machine
        conn.execute(update(engagements).where(*key).values(
            count=engagements.c.count + 1, last_at=at, machine=before and machine))
        return before and not machine


def counts(store: Store, journey_id: str) -> dict[str, dict[str, int]]:
    """Per node: messages opened and clicked (by a person), unsubscribed, and opened by a
    machine only (``machine_opened``)."""
    found: dict[str, dict[str, int]] = {}
    with store.engine.connect() as conn:
        rows = conn.execute(select(engagements.c.node_id, engagements.c.kind, engagements.c.machine,
                                   func.count()).where(engagements.c.journey_id == journey_id)
                            .group_by(engagements.c.node_id, engagements.c.kind, engagements.c.machine))
        for node_id, kind, machine, n in rows:
            name = f"machine_{kind}" if machine else kind
            found.setdefault(node_id, {})[name] = found.get(node_id, {}).get(name, 0) + n
    return found


def clickers(store: Store, journey_id: str) -> dict[str, set[str]]:
    """Per node: the users who clicked its message (a person's click)."""
    found: dict[str, set[str]] = {}
    with store.engine.connect() as conn:
        for node_id, user_id in conn.execute(select(engagements.c.node_id, engagements.c.user_id).where(
                engagements.c.journey_id == journey_id, engagements.c.kind == "clicked",
                engagements.c.machine.is_(False))):
            found.setdefault(node_id, set()).add(user_id)
    return found
