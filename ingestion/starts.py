"""How a journey's run is started: its id-reuse policy (the journey's re-entry rule), the
definition it is pinned to, its input, search attributes, priority and summary in the Temporal
UI. One round trip to Temporal (``ingestion.router`` decides when)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from journeys.events import Event, fairness_key, priority_of
from journeys.language.models import Journey
from journeys.store.database import Store
from journeys.store.versions import VERSIONS
from workflows.journey import JourneyWorkflow
from workflows.models import (
    INTERPRETER,
    JOURNEY_ID,
    JOURNEY_KEY,
    JOURNEY_NODE,
    USER_ID,
    JourneyInput,
)

REUSE = {"never": WorkflowIDReusePolicy.REJECT_DUPLICATE,
         "after_exit": WorkflowIDReusePolicy.ALLOW_DUPLICATE}


@dataclass(frozen=True)
class RunStart:
    """One start: the user's run of ``journey`` under ``wid``. ``key``: a keyed journey's
    instance; ``kept``: the event's claim keeps it in the store, for the run to name."""

    journey: Journey
    user_id: str
    event: Event | None
    wid: str
    key: str | None = None
    start_delay: timedelta | None = None
    kept: bool = False


async def pinned(journey: Journey, store: Store | None) -> dict[str, Any]:
    """How a new run pins ``journey``: by id and version, kept in ``store`` the first time
    (journeys.store.versions), for the worker to read; or, without a store to keep it in, the
    whole definition."""
    if store is None:
        return {"journey": journey}
    version = VERSIONS.add(journey)
    if not VERSIONS.is_kept(store, journey.id, version):  # the first time: a write
        version = await asyncio.to_thread(VERSIONS.kept_in, store, journey)
    return {"journey_id": journey.id, "version": version}


async def start_run(client: Client, task_queue: str, start: RunStart, *, versions: Store | None,
                    search_attributes: bool, send_timeout: float | None,
                    priority: bool) -> WorkflowHandle:
    """Start the run (or find it running: the handle says which, ``router.started``)."""
    journey, user_id, event, key = start.journey, start.user_id, start.event, start.key
    # JourneyKey only on keyed instances: a cluster without it still runs unkeyed journeys.
    pairs: list[SearchAttributePair[str]] = [
        SearchAttributePair(JOURNEY_ID, journey.id), SearchAttributePair(USER_ID, user_id),
        SearchAttributePair(JOURNEY_NODE, journey.entry)]
    if key is not None:
        pairs.append(SearchAttributePair(JOURNEY_KEY, key))
    keyed = f", {journey.entry_key} {key}" if key is not None else ""
    kept = start.kept and event is not None
    if kept and event is not None and event.properties:
        # Its receipt keeps it whole, where the sends read it: history (the input, the Temporal
        # UI) holds its id, name and time, not what the user did (personal data, bytes).
        event = event.model_copy(update={"properties": {}})
    return await client.start_workflow(
        JourneyWorkflow.run,
        JourneyInput(**await pinned(journey, versions), user_id=user_id, entry_event=event,
                     search_attributes=search_attributes, send_timeout=send_timeout,
                     entry_key=key, interpreter=INTERPRETER,
                     kept_event=event.id if kept and event is not None else None),
        id=start.wid, task_queue=task_queue, id_reuse_policy=REUSE[journey.reentry],
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes(pairs) if search_attributes else None,
        static_summary=f"{journey.name}: user {user_id}{keyed}",
        static_details=f"journey `{journey.id}`, entered at `{journey.entry}`",
        start_delay=start.start_delay,
        # Served by kind (transactional first, a broadcast's users last), fairly among journeys.
        priority=Priority(priority_key=priority_of(journey), fairness_key=fairness_key(journey.id))
        if priority else Priority())
