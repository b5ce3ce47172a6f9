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
from dataclasses import replace
from pathlib import Path
from typing import Any

from ingestion import listens, retired
from ingestion.counting import RETENTION_DAYS, Counting
from ingestion.failures import NotRouted
from ingestion.index import Index
from ingestion.retired import Retired
from ingestion.router import Router
from journeys.events import Event, Routed, check_event
from journeys.language.problems import UsageError
from journeys.store.database import Store
from journeys.store.versions import VERSIONS, keep
from journeys.validation.catalog import Catalog, catalog

log = logging.getLogger("journeys.ingestion")

#: How often, at most, a long-running process looks at the catalog's files for a change.
RECHECK_SECONDS = 1.0


class Ingestion:
    """A process's way in: the catalog of ``folder`` (with its index), the store, the router."""

    def __init__(self, router: Router, store: Store, folder: str | Path,
                 recheck: float = RECHECK_SECONDS, deadline: float | None = None,
                 behaviour_days: int = RETENTION_DAYS) -> None:
        """``deadline``: the seconds an event or profile update may take to route
        (``JOURNEYS_ROUTE_TIMEOUT``), over which it fails with :class:`NotRouted`.
        ``behaviour_days``: how long what users did is kept (``JOURNEYS_BEHAVIOUR_DAYS``)."""
        self.router, self.store, self.folder, self.recheck = router, store, folder, recheck
        self.counting = Counting(store, behaviour_days)
        self.deadline = deadline
        self._catalog: Catalog | None = None
        self._index = Index.of(())
        self._checked = float("-inf")
        self._lost: str | None = None  # why the folder could not be read, once logged
        # Journeys that left the catalog with users still in them, learned for this index.
        self._retired, self._retired_for, self._retired_at = Retired(), self._index, float("-inf")
        self._retired_lock = asyncio.Lock()
        self._retired_logged: frozenset[str] = frozenset()
        self._idle: set[str] = set()  # retired journeys visibility counted nobody in, last time
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
                try:  # what each journey listens to, kept for runs of this version after an edit
                    earlier = listens.remember(self.store, found.journeys)
                    keep(self.store, found.journeys)  # the definitions its runs read
                    VERSIONS.use(self.store)
                except Exception as exc:  # the store is down or locked: the next look records it
                    if self._catalog is None:
                        raise
                    log.warning("journey catalog changed, not yet read: the store did not "
                                "answer (%s)", type(exc).__name__)
                    return self._index
                if self._catalog is not None or found.broken:
                    _log_catalog(found)
                self.router.earlier.clear()
                self.router.earlier.update(earlier)
                self._catalog, self._index = found, Index.of(found.journeys, earlier)
        return self._index

    async def retired(self) -> Retired:
        """The journeys that left the catalog while users may still be in them: learned from
        the store and visibility when the catalog changes, and again every ``retired.RECHECK``
        seconds (as their last users leave, they drop out: then an event costs nothing more)."""
        index = await self.current()
        if index is self._retired_for and time.monotonic() - self._retired_at < retired.RECHECK:
            return self._retired
        async with self._retired_lock:
            if index is not self._retired_for or time.monotonic() - self._retired_at >= retired.RECHECK:
                ids = [journey.id for journey in index.journeys]
                learned = await asyncio.to_thread(retired.learn, self.store, ids)
                idle = await retired.idle(self.router.client, learned.ids) if learned else set()
                if idle is not None:  # idle on two checks in a row: nobody is left in it
                    learned, self._idle = learned.without(idle & self._idle), idle
                if learned.keyed:  # (their entry keys, read once)
                    known = {j: p for j, p in self._retired.pinned.items() if j in learned.keyed}
                    learned = await retired.with_keys(self.router.client, replace(learned, pinned=known))
                self._retired, self._retired_for = learned, index
                self._retired_at = time.monotonic()
                self._log_retired(learned)
        return self._retired

    async def route_retired(self, event: Event) -> list[Routed]:
        """``event`` to its user's runs of journeys that left the catalog (none: no query)."""
        gone = await self.retired()
        if not gone:
            return []
        runs = await asyncio.to_thread(retired.runs_of, self.store, event.user_id, gone)
        runs = retired.reached_by(runs, gone, event)
        return await self.router.route_retired(runs, event) if runs else []

    async def profile_retired(self, user_id: str, changed: dict[str, Any]) -> list[Routed]:
        """Changed profile properties to the user's runs of journeys that left the catalog."""
        gone = await self.retired()
        if not gone or not changed:
            return []
        runs = await asyncio.to_thread(retired.runs_of, self.store, user_id, gone)
        return await self.router.profile_retired(runs, user_id, changed) if runs else []

    def _log_retired(self, learned: Retired) -> None:
        """One warning per journey as it is found retired, naming its file where one claims it."""
        for journey_id in sorted(learned.ids - self._retired_logged):
            log.warning("%s (they still get their events)",
                        self.catalog.why_not(journey_id), extra={"journey_id": journey_id})
        self._retired_logged = learned.ids

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
        """Merge ``profile`` into the user's (first: the journey sees it), count the event (what
        segments ask of), then route it: entries start, waits and exits are signalled; set
        profile dates may start journeys."""
        check_event(event)
        index = await self.current()
        async with self._bounded():
            await self.counting.count(event)
            if profile:
                await asyncio.to_thread(self.store.update_profile, event.user_id, profile)
            routed = await self.router.route_event(index.for_event(event.name), event)
            routed += await self.route_retired(event)
            if profile:
                routed += await self.router.route_profile(index.for_profile(profile), event.user_id,
                                                          profile)
                routed += await self.profile_retired(event.user_id, profile)
        return routed

    async def identify(self, user_id: str, traits: dict[str, Any]) -> list[Routed]:
        """Merge ``traits`` into the user's profile; profile-date journeys may start."""
        index = await self.current()
        async with self._bounded():
            await asyncio.to_thread(self.store.update_profile, user_id, traits)
            routed = await self.router.route_profile(index.for_profile(traits), user_id, traits)
            return routed + await self.profile_retired(user_id, traits)

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
