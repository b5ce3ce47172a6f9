"""One event, or one profile update, into the journeys: the path every way in takes.

``starter.py event`` and ``profile``, ``starter.py ingest`` and the HTTP API each hold one
:class:`Ingestion` for the life of their process: the catalog is validated once, indexed by
event name, and read again only when its files change (a broken edit keeps the last good
version and is logged once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from ingestion.index import Index
from ingestion.router import Router
from journeys.catalog import Catalog, catalog
from journeys.events import Event, Routed, check_event
from journeys.problems import UsageError
from journeys.store import Store

log = logging.getLogger("journeys.ingestion")

#: How often, at most, a long-running process looks at the catalog's files for a change.
RECHECK_SECONDS = 1.0


class Ingestion:
    """A process's way in: the catalog of ``folder`` (with its index), the store, the router."""

    def __init__(self, router: Router, store: Store, folder: str | Path,
                 recheck: float = RECHECK_SECONDS) -> None:
        self.router, self.store, self.folder, self.recheck = router, store, folder, recheck
        self._catalog: Catalog | None = None
        self._index = Index.of(())
        self._checked = float("-inf")
        self._lost: str | None = None  # why the folder could not be read, once logged
        self._look: asyncio.Future[Index] | None = None  # a look at the folder under way

    @property
    def catalog(self) -> Catalog:
        """The catalog as last read (read now if never read)."""
        self.index()
        assert self._catalog is not None
        return self._catalog

    def index(self) -> Index:
        """The current catalog's index; the folder is looked at at most every ``recheck`` s."""
        now = time.monotonic()
        if now - self._checked >= self.recheck or self._catalog is None:
            self._checked = now
            try:
                found = catalog(self.folder)
            except UsageError as exc:  # the folder is gone or unreadable: keep routing what we had
                if self._catalog is None:
                    raise
                if self._lost != str(exc):
                    log.warning("journey catalog unreadable, the last good one routes: %s", exc)
                    self._lost = str(exc)
                return self._index
            self._lost = None
            if found is not self._catalog:
                if self._catalog is not None or found.broken:
                    _log_catalog(found)
                self._catalog, self._index = found, Index.of(found.journeys)
        return self._index

    async def current(self) -> Index:
        """:meth:`index` for code on the event loop: when the folder is due a look, it is looked
        at (and a changed catalog validated, seconds for a large one) in a thread, so that the
        loop keeps answering meanwhile."""
        if self._catalog is not None and time.monotonic() - self._checked < self.recheck:
            return self._index
        if self._look is None:  # one look at a time: the requests meanwhile wait for it
            self._look = asyncio.ensure_future(asyncio.to_thread(self.index))
            self._look.add_done_callback(self._looked)
        return await asyncio.shield(self._look)

    def _looked(self, look: asyncio.Future[Index]) -> None:
        self._look = None

    async def track(self, event: Event, profile: dict[str, Any] | None = None) -> list[Routed]:
        """Merge ``profile`` into the user's (first: the journey sees it), then route the event:
        entries start, waits and exits are signalled; set profile dates may start journeys."""
        check_event(event)
        index = await self.current()
        if profile:
            await asyncio.to_thread(self.store.update_profile, event.user_id, profile)
        routed = await self.router.route_event(index.for_event(event.name), event)
        if profile:
            routed += await self.router.route_profile(index.for_profile(profile), event.user_id, profile)
        return routed

    async def identify(self, user_id: str, traits: dict[str, Any]) -> list[Routed]:
        """Merge ``traits`` into the user's profile; profile-date journeys may start."""
        index = await self.current()
        await asyncio.to_thread(self.store.update_profile, user_id, traits)
        return await self.router.route_profile(index.for_profile(traits), user_id, traits)


def _log_catalog(found: Catalog) -> None:
    journeys = [journey.id for journey in found.journeys]
    if warning := found.warning():
        log.warning("journey catalog changed: %s", warning, extra={"journeys": journeys})
    else:
        log.info("journey catalog changed: %d journey(s) route events", len(journeys),
                 extra={"journeys": journeys})
