"""Journeys edited in place: the events their earlier versions listened to.

A journey's file changed under the same id (a wait's event renamed, an ``exit_when`` event
dropped): the users who entered an earlier version walk it on, each with the definition it
entered with pinned in its input, and wait for that version's events. The catalog now routes
the new version's. So that none of theirs is dropped, every process that reads a catalog records
each journey's events in the store (``journey_listens``, never forgotten), and routes an event
that an earlier version listened to as it routes the current version's: a signal to the user's
run, which ignores an event its own version does not listen to.

The cost: an event only an earlier version listened to is one signal attempt per user of the
journey (an action, and two history events, where the user runs the new version); none where
the user has no run (the server answers NOT_FOUND).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from journeys.events import listens_to
from journeys.language.models import Journey
from journeys.store.database import Store
from journeys.store.tables import journey_listens


def remember(store: Store, journeys: Sequence[Journey]) -> dict[str, frozenset[str]]:
    """Record what each of ``journeys`` listens to; return, per journey id, the events only an
    earlier version of it listened to (none for most)."""
    now = {journey.id: listens_to(journey) for journey in journeys}
    table = journey_listens.c
    with store.engine.begin() as conn:
        known = conn.execute(select(table.journey_id, table.event_name)
                             .where(table.journey_id.in_(sorted(now)))).all() if now else []
    seen: dict[str, set[str]] = {}
    for journey_id, name in known:
        seen.setdefault(journey_id, set()).add(name)
    new = [{"journey_id": journey_id, "event_name": name, "at": datetime.now(UTC)}
           for journey_id, names in now.items() for name in sorted(names - seen.get(journey_id, set()))]
    if new:
        try:
            with store.engine.begin() as conn:
                conn.execute(journey_listens.insert(), new)
        except IntegrityError:  # another process recorded some meanwhile: one by one
            for row in new:
                try:
                    with store.engine.begin() as conn:
                        conn.execute(journey_listens.insert(), [row])
                except IntegrityError:
                    pass
    return {journey_id: frozenset(seen[journey_id] - names)
            for journey_id, names in now.items() if seen.get(journey_id, set()) - names}
