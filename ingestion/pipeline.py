"""One event, or one profile update, into the journeys: the path every way in takes.

``starter.py event`` and ``profile``, ``starter.py ingest`` and the HTTP API each hold one
:class:`Ingestion` for the life of their process: the catalog is validated once, indexed by
event name, and read again only when its files change (a broken edit keeps the last good
version and is logged once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ingestion.failures import NotRouted
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
                 recheck: float = RECHECK_SECONDS, deadline: float | None = None) -> None:
        """``deadline``: the seconds an event or profile update may take to route
        (``JOURNEYS_ROUTE_TIMEOUT``), over which it fails with :class:`NotRouted`."""
        self.router, self.store, self.folder, self.recheck = router, store, folder, recheck
        self.deadline = deadline
        self._catalog: Catalog | None = None
        self._index = Index.of(())
        self._checked = float("-inf")
        self._lost: str | None = None  # why the folder could not be read, once logged

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

    async def track(self, event: Event, profile: dict[str, Any] | None = None) -> list[Routed]:
        """Merge ``profile`` into the user's (first: the journey sees it), then route the event:
        entries start, waits and exits are signalled; set profile dates may start journeys."""
        check_event(event)
        index = self.index()
        async with self._bounded():
            if profile:
                await asyncio.to_thread(self.store.update_profile, event.user_id, profile)
            routed = await self.router.route_event(index.for_event(event.name), event)
            if profile:
                routed += await self.router.route_profile(index.for_profile(profile), event.user_id,
                                                          profile)
        return routed

    async def identify(self, user_id: str, traits: dict[str, Any]) -> list[Routed]:
        """Merge ``traits`` into the user's profile; profile-date journeys may start."""
        index = self.index()
        async with self._bounded():
            await asyncio.to_thread(self.store.update_profile, user_id, traits)
            return await self.router.route_profile(index.for_profile(traits), user_id, traits)

    @contextlib.asynccontextmanager
    async def _bounded(self) -> AsyncIterator[None]:
        """Within the deadline, or :class:`NotRouted` (what was routed by then stays routed: a
        copy sent again is a duplicate there, and goes on where it stopped)."""
        try:
            async with asyncio.timeout(self.deadline):
                yield
        except TimeoutError:
            if self.deadline is None:
                raise
            raise NotRouted(f"not routed within {self.deadline:g} s") from None


def _log_catalog(found: Catalog) -> None:
    journeys = [journey.id for journey in found.journeys]
    if warning := found.warning():
        log.warning("journey catalog changed: %s", warning, extra={"journeys": journeys})
    else:
        log.info("journey catalog changed: %d journey(s) route events", len(journeys),
                 extra={"journeys": journeys})
