"""Addresses that bounced for good, per channel (table ``bounces``): a provider that sees one
remembers it, and later messages to it are ``unreachable`` at once, without a call."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from journeys.store.database import Store
from journeys.store.tables import bounces


def _digest(address: str) -> str:
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


class Bounces:
    """The store's bounced addresses (kept as digests: the table names no one)."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine

    def known(self, channel: str, address: str) -> str | None:
        """Why ``address`` is undeliverable on ``channel``, if it bounced before."""
        with self.engine.connect() as conn:
            return conn.execute(select(bounces.c.reason).where(
                bounces.c.channel == channel, bounces.c.address == _digest(address))).scalar_one_or_none()

    def remember(self, channel: str, address: str, reason: str) -> None:
        """``address`` bounced for good on ``channel`` (the first reason is kept)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(bounces).values(channel=channel, address=_digest(address),
                                                    reason=reason[:200], at=datetime.now(UTC)))
        except IntegrityError:
            pass  # known already


def bounces_of(store: object) -> Bounces | None:
    """The bounces of a provider's ``store`` (None when it has none: a provider made in a test)."""
    return Bounces(store) if isinstance(store, Store) else None
