"""Every event a user does is counted (journeys.store.behaviour) before it is routed: what
segments are asked of.

Counting is batched across events: the events that come while a batch is being written go
together in the next one (one transaction for all of them), so a busy API writes a few batches
a second, not a transaction per event. An event is answered only once its batch is written: a
count is never lost behind a 200, and a retry of the event counts nothing more (its id).
"""

from __future__ import annotations

import asyncio

from journeys.events import Event
from journeys.store import behaviour
from journeys.store.database import Store

#: JOURNEYS_BEHAVIOUR_DAYS' default: counts older than this many days are pruned.
RETENTION_DAYS = 400


class Counting:
    """The events of one process, counted in batches on ``store``."""

    def __init__(self, store: Store, retention_days: int = RETENTION_DAYS) -> None:
        self.store, self.retention_days = store, retention_days
        self._waiting: list[tuple[Event, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def count(self, event: Event) -> None:
        """Count ``event``; returns once it is written (raises what the store raised). With a
        retention of 0 days nothing is counted (no audience journeys in this deployment)."""
        if self.retention_days == 0:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        await asyncio.shield(done)  # a cancelled request's event is still counted with its batch

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                did = [behaviour.Did(e.user_id, e.id, e.name, e.time) for e, _ in batch]
                try:  # in a thread: a store busy with another process's write must not stall the loop
                    await asyncio.to_thread(behaviour.count, self.store, did, self.retention_days)
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._writer = None
