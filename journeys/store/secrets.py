"""Secrets the processes sharing a store must agree on, made once (table ``secrets``)."""

from __future__ import annotations

import secrets as random
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from journeys.store.database import Store
from journeys.store.tables import secrets


def shared_secret(store: Store, name: str) -> bytes:
    """The secret ``name``: 32 random bytes, made by the first process that asks, then read."""
    with store.engine.connect() as conn:
        found = conn.execute(select(secrets.c.value).where(secrets.c.name == name)).scalar_one_or_none()
    if found is None:
        try:
            with store.engine.begin() as conn:
                conn.execute(insert(secrets).values(name=name, value=random.token_hex(32),
                                                    at=datetime.now(UTC)))
        except IntegrityError:  # another process made it first: theirs holds
            pass
        with store.engine.connect() as conn:
            found = conn.execute(select(secrets.c.value).where(secrets.c.name == name)).scalar_one()
    return bytes.fromhex(found)
