"""Journeys that left the catalog while users are still in them ("retired" journeys).

A journey's file renamed away, given another id, or broken (in a process that never read its
last good version): the catalog no longer routes to it, yet its users' workflows run on, each
with the definition it entered with pinned in its input. They must keep getting their events
(an exit event above all) and be found by ``status`` and ``exit`` until they end.

Where they are comes from the store's ``entries`` (the router records every start there) and
from Temporal's visibility:

- at catalog load (and again every ``RECHECK`` seconds), the journey ids that have entries but
  are not in the catalog, less those of which visibility counted no running workflow on two
  checks in a row: usually none, and then an event costs nothing more;
- per event, while there are some: one indexed query for the user's runs of them (workflow ids
  are the ``entries`` primary key, so an unkeyed journey's run is an exact lookup), then a signal
  to each run found. The workflow ignores events it does not listen to and deduplicates ids, so
  the router needs no definition to send them; a run that has ended answers NOT_FOUND.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, and_, or_, select
from temporalio.client import Client
from temporalio.service import RPCError

from journeys.events import (
    WORKFLOW_ID_PREFIX,
    BadKey,
    Event,
    entry_key,
    instance_id,
    key_of_instance,
    workflow_id,
)
from journeys.language.models import Journey
from journeys.store.database import Store
from journeys.store.tables import entries
from workflows.models import JourneyInput, journey_of

log = logging.getLogger("journeys.ingestion")

#: How often a long-running process looks again which retired journeys still have users.
RECHECK = 300.0
#: Entries of a retired journey looked at to tell whether its ids are keyed.
SAMPLE = 20
@dataclass(frozen=True)
class Retired:
    """Journey ids with entries that the catalog no longer holds, and which of them are keyed
    (their instance ids carry an entry key: found by journey and user, not by one id)."""

    ids: frozenset[str] = frozenset()
    keyed: frozenset[str] = frozenset()
    #: Some run ids of each keyed journey (one of them holds its definition).
    samples: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    #: A keyed journey's definition as one of its runs pinned it: an event with its entry key
    #: reaches that key's instance only (without it: every instance of the user).
    pinned: dict[str, Journey] = field(default_factory=dict, compare=False)

    def without(self, gone: Iterable[str]) -> Retired:
        """These journeys forgotten (nobody runs in them any more)."""
        left = self.ids - set(gone)
        return Retired(left, self.keyed & left, {j: s for j, s in self.samples.items() if j in left},
                       {j: p for j, p in self.pinned.items() if j in left})

    def __bool__(self) -> bool:
        return bool(self.ids)


def entered_journeys(store: Store) -> set[str]:
    """Every journey id with an entry, without reading every entry: a loose scan of the
    ``journey_id`` index (one probe per distinct id), the same SQL on SQLite and PostgreSQL."""
    found: set[str] = set()
    last: str | None = None
    probe = select(entries.c.journey_id).order_by(entries.c.journey_id).limit(1)
    with store.engine.connect() as conn:
        while True:
            query = probe if last is None else probe.where(entries.c.journey_id > last)
            last = conn.execute(query).scalar()
            if last is None:
                return found
            found.add(last)


def any_entered(store_url: str) -> bool:
    """Has any journey been entered (a store that exists, with entries)? A catalog with no
    valid journey still routes then: its journeys left it, their users may still be in them."""
    if store_url.startswith("sqlite:///") and not Path(store_url.removeprefix("sqlite:///")).exists():
        return False
    return bool(entered_journeys(Store(store_url)))


def learn(store: Store, catalog_ids: Iterable[str]) -> Retired:
    """The journeys with entries that are not in the catalog (whether anybody still runs in
    them is :func:`idle`'s question), each marked keyed or not."""
    candidates = entered_journeys(store) - set(catalog_ids)
    samples = {}
    with store.engine.connect() as conn:
        for journey_id in candidates:
            prefix = f"{WORKFLOW_ID_PREFIX}{journey_id}/"
            ids = conn.execute(select(entries.c.workflow_id).where(
                entries.c.journey_id == journey_id).limit(SAMPLE)).scalars().all()
            # A keyed id is journey/j/user/key with "/" escaped in both: an id without a second
            # "/" is an unkeyed user's. (Unkeyed users whose ids all hold "/" look keyed: then
            # both lookups are made, which finds them too.)
            if all("/" in wid.removeprefix(prefix) for wid in ids):
                samples[journey_id] = tuple(ids)
    return Retired(frozenset(candidates), frozenset(samples), samples)


async def idle(client: Client, journey_ids: Iterable[str]) -> set[str] | None:
    """The journeys of which visibility counts no running workflow; None where the server
    cannot count (the time-skipping test server, visibility down). Visibility lags a start by
    a moment: a journey is only forgotten when it is idle on two checks ``RECHECK`` apart."""
    found = set()
    for journey_id in sorted(journey_ids):
        quoted = journey_id.replace("\\", "\\\\").replace('"', '\\"')
        try:
            counted = await client.count_workflows(
                f'JourneyId = "{quoted}" AND ExecutionStatus = "Running"')
        except RPCError:
            return None
        if not counted.count:
            found.add(journey_id)
    return found


async def with_keys(client: Client, retired: Retired) -> Retired:
    """``retired``, with each keyed journey's definition read from the input of one of its
    runs (the name of its entry key is nowhere else once its file is gone)."""
    pinned = dict(retired.pinned)
    for journey_id in sorted(retired.keyed - pinned.keys()):
        for wid in retired.samples.get(journey_id, ()):
            try:
                async for event in client.get_workflow_handle(wid).fetch_history_events():
                    payloads = event.workflow_execution_started_event_attributes.input.payloads
                    found = client.data_converter.payload_converter.from_payload(
                        payloads[0], JourneyInput)
                    pinned[journey_id] = await asyncio.to_thread(journey_of, found)
                    break
            except (RPCError, IndexError, ValueError, LookupError):  # its history is gone: the next
                continue
            break
        if journey_id not in pinned:
            log.warning("journey '%s' left the catalog and no run of it says its entry key: "
                        "an event reaches every instance of its user", journey_id)
    return Retired(retired.ids, retired.keyed, retired.samples, pinned)


def reached_by(runs: list[tuple[str, str]], retired: Retired, event: Event) -> list[tuple[str, str]]:
    """The runs ``event`` is for: a keyed journey's event with its key goes to that key's
    instance only, as it would if the journey were in the catalog."""
    chosen = []
    for journey_id, wid in runs:
        journey = retired.pinned.get(journey_id)
        if journey is not None and journey.entry_key is not None:
            try:
                key = entry_key(journey, event)
            except BadKey:
                key = None
            if key is not None and wid != instance_id(journey_id, event.user_id, key):
                continue
        chosen.append((journey_id, wid))
    return chosen


def runs_of(store: Store, user_id: str, retired: Retired) -> list[tuple[str, str]]:
    """(journey id, workflow id) of each run of ``user_id`` in the retired journeys, from the
    store's entries: one query, by primary key for unkeyed journeys (an exact id), and for
    keyed ones a range of it on SQLite (the user's instances), by journey and user elsewhere."""
    if not retired:
        return []
    exact = [workflow_id(j, user_id) for j in sorted(retired.ids)]
    where: ColumnElement[bool] = entries.c.workflow_id.in_(exact)
    if retired.keyed and store.engine.dialect.name == "sqlite":
        # SQLite compares text byte by byte: the user's instance ids (journey/j/user/...) are
        # one range of the primary key.
        for journey_id in sorted(retired.keyed):
            low = instance_id(journey_id, user_id, "k")[:-1]
            where = or_(where, and_(entries.c.workflow_id >= low,
                                    entries.c.workflow_id < low[:-1] + "0"))  # "0" follows "/"
    elif retired.keyed:  # a linguistic collation may not keep a prefix together: journey, user
        where = or_(where, and_(entries.c.journey_id.in_(sorted(retired.keyed)),
                                entries.c.user_id == user_id))
    query = select(entries.c.journey_id, entries.c.workflow_id).where(where).distinct()
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    found = []
    for journey_id, wid in rows:
        if journey_id not in retired.ids:
            continue
        if wid == workflow_id(journey_id, user_id) or key_of_instance(journey_id, user_id, wid):
            found.append((journey_id, wid))
    return sorted(set(found))
