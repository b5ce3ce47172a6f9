"""The ``trigger_journey`` activity: a journey's node enters its user into another journey,
with its personalization event as that journey's entry event (CleverTap's Journey Trigger).

It routes the event as ingestion does, to the one journey, as the folder's catalog has it now:
entry rules, re-entry and keys hold as for any entry. The event keeps its id, so a retry (or
the same event already routed there) enters once: the store's receipts say so.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio import activity

from activities.models import TriggerJourneyInput, event_of
from ingestion.router import Router
from journeys.store.database import Store
from journeys.validation.catalog import catalog
from telemetry.logs import with_ids


class Triggers:
    """The activity, with the worker's store and journey folder bound in."""

    def __init__(self, store: Store, journeys_dir: str | Path, *, search_attributes: bool = True,
                 send_timeout: float | None = None, priority: bool = True) -> None:
        self.store, self.journeys_dir = store, journeys_dir
        self.search_attributes, self.send_timeout, self.priority = search_attributes, send_timeout, priority

    @activity.defn(name="trigger_journey")
    @with_ids
    async def trigger_journey(self, input: TriggerJourneyInput) -> str:
        """What became of the entry: started, duplicate (entered already), or why not."""
        event = await asyncio.to_thread(event_of, input.event, input.kept_event, input.kept_in,
                                        input.user_id, self.store.kept_event)
        if event is None:
            return "not entered: no event to enter with"
        found = await asyncio.to_thread(catalog, self.journeys_dir)
        target = next((j for j in found.journeys if j.id == input.journey_id), None)
        if target is None:
            return f"not entered: journey '{input.journey_id}' is not in the catalog"
        router = Router(activity.client(), activity.info().task_queue, receipts=self.store,
                        search_attributes=self.search_attributes, send_timeout=self.send_timeout,
                        priority=self.priority)
        routed = await router.route_event([target], event)
        failed = [r for r in routed if r.action == "failed"]
        if failed:  # Temporal or the store: the activity's retries try again
            raise RuntimeError(failed[0].error or "not routed")
        return routed[0].action if routed else "not entered: the event does not match its entry"
