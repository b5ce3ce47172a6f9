"""A journey's versions: each definition by its content digest, kept in the store.

A user's run pins the version of the journey it entered: it finishes on that version whatever
the catalog says later. The run's input holds the journey's id and version, not the whole
definition, which every run of the journey would otherwise copy into its history (the largest
part of it: 1.2 kB of the bench journey's 7 kB). Every process that reads a catalog keeps its
definitions in the store (``keep``); a worker finds a version in memory, else in its store.

The digest makes the lookup safe in workflow code: a version is one definition for ever, so a
replay reads what the first run read. A worker whose store does not have the version (a store
not shared with the router) fails the workflow task, which Temporal retries: the run waits,
visibly, and loses nothing.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from journeys.language.models import Journey
from journeys.store.database import Store
from journeys.store.tables import journey_versions

__all__ = ["VERSIONS", "Versions", "keep", "version_of"]


def version_of(journey: Journey) -> str:
    """The definition's digest (16 hex digits of SHA-256 over its JSON without defaults)."""
    return hashlib.sha256(journey.model_dump_json(exclude_defaults=True).encode()).hexdigest()[:16]


def keep(store: Store, journeys: Sequence[Journey]) -> None:
    """Record each of ``journeys``' definitions in ``store`` unless it is there already."""
    given = {(j.id, version_of(j)): j for j in journeys}
    if not given:
        return
    c = journey_versions.c
    with store.engine.connect() as conn:
        known = set(conn.execute(select(c.journey_id, c.version)
                                 .where(tuple_(c.journey_id, c.version).in_(sorted(given)))).all())
    now = datetime.now(UTC)
    for (journey_id, version), journey in sorted(given.items()):
        if (journey_id, version) in known:
            continue
        try:
            with store.engine.begin() as conn:
                conn.execute(journey_versions.insert(), [{
                    "journey_id": journey_id, "version": version, "at": now,
                    "definition": journey.model_dump_json(exclude_defaults=True)}])
        except IntegrityError:  # another process kept it meanwhile
            pass


class Versions:
    """The definitions this process knows, by journey id and version: those it was given
    (``add``) and those its stores hold (``use``). One per process (``VERSIONS``), read by
    workflow code through the sandbox's passthrough and by the send activity."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], Journey] = {}
        self._stores: list[Store] = []
        self._lock = threading.Lock()
        self._digests: dict[int, tuple[Journey, str]] = {}  # id(journey): its version
        self._kept: set[tuple[int, str, str]] = set()  # (id(store), journey id, version)

    def add(self, journey: Journey) -> str:
        """Know ``journey``; its version (computed once for the same object)."""
        known = self._digests.get(id(journey))
        if known is not None and known[0] is journey:
            return known[1]
        version = version_of(journey)
        self._known[(journey.id, version)] = journey
        if len(self._digests) > 10_000:  # journeys made on the fly (tests): keep it bounded
            self._digests.clear()
        self._digests[id(journey)] = (journey, version)
        return version

    def is_kept(self, store: Store, journey_id: str, version: str) -> bool:
        """Did this process keep ``journey_id``'s ``version`` in ``store`` already?"""
        return (id(store), journey_id, version) in self._kept

    def kept_in(self, store: Store, journey: Journey) -> str:
        """``journey``'s version, kept in ``store`` (once per process) and looked up there."""
        version = self.add(journey)
        key = (id(store), journey.id, version)
        if key not in self._kept:
            self.use(store)
            keep(store, [journey])
            self._kept.add(key)
        return version

    def put(self, journey_id: str, version: str, journey: Journey) -> None:
        """Know ``journey`` as ``journey_id``'s ``version`` (a recorded history's, say)."""
        self._known[(journey_id, version)] = journey

    def use(self, store: Store) -> None:
        """Look versions up in ``store`` too."""
        with self._lock:
            if all(s is not store for s in self._stores):
                self._stores.append(store)

    def get(self, journey_id: str, version: str) -> Journey:
        """The definition of ``journey_id`` at ``version``; LookupError if no store has it."""
        found = self._known.get((journey_id, version))
        if found is not None:
            return found
        c = journey_versions.c
        query = select(c.definition).where(c.journey_id == journey_id, c.version == version)
        for store in list(self._stores):
            try:
                with store.engine.connect() as conn:
                    definition = conn.execute(query).scalar()
            except SQLAlchemyError:  # a store gone (a test's file) or down: the next one
                continue
            if definition is not None:
                journey = Journey.model_validate_json(definition)
                self._known[(journey_id, version)] = journey
                return journey
        raise LookupError(f"journey '{journey_id}' version {version} is in none of the "
                          f"{len(self._stores)} stores this process reads (journey_versions): "
                          "is the worker's store the router's?")


#: This process's versions.
VERSIONS = Versions()
