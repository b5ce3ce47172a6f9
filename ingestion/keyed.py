"""Keyed journeys (``entry_key``): where a user's instances of a journey are.

Each instance a router starts is a row of the store's ``entries`` table (the funnel counts them
there), so a user's instances are read from it rather than from Temporal's visibility, which is
eventually consistent: an instance started a moment ago is found at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, func, select

from journeys.events import key_of_instance
from journeys.language.models import Journey
from journeys.store.database import Store
from journeys.store.tables import entries

#: An entry older than the journey's timeout and this margin has ended: it is not signalled.
TIMEOUT_MARGIN = timedelta(hours=1)

_INSTANCES = (select(entries.c.workflow_id, func.max(entries.c.at).label("last"))
              .where(entries.c.journey_id == bindparam("j"), entries.c.user_id == bindparam("u"))
              .group_by(entries.c.workflow_id)
              .order_by(func.min(entries.c.at), entries.c.workflow_id))


def instances(store: Store, journey: Journey, user_id: str, *, live: bool = False) -> list[str]:
    """The workflow ids of ``user_id``'s instances of the keyed ``journey``, first entered first.

    ``live``: only those that may still run (entered within the journey's ``timeout`` and a
    margin; all of them if it has none). An id whose run has ended is harmless to signal (the
    server answers NOT_FOUND); this only spares the calls.
    """
    with store.engine.connect() as conn:
        rows = conn.execute(_INSTANCES, {"j": journey.id, "u": user_id}).all()
    found = [(row.workflow_id, _aware(row.last)) for row in rows
             if key_of_instance(journey.id, user_id, row.workflow_id) is not None]
    if live and journey.timeout is not None:
        since = datetime.now(UTC) - journey.timeout - TIMEOUT_MARGIN
        found = [(wid, last) for wid, last in found if last is None or last >= since]
    return [wid for wid, _ in found]


def _aware(moment: datetime | str | None) -> datetime | None:
    if isinstance(moment, str):  # SQLite's func.max gives the stored text back
        moment = datetime.fromisoformat(moment)
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment
