"""The activity that picks each user's IntelliNODE path: a result recorded in history (replay
is deterministic), the path statistics in the store, the allocation cached per worker."""

from __future__ import annotations

from temporalio import activity

from activities.models import ChoosePathInput
from journeys.store import intellinode
from journeys.store.database import Store
from telemetry.logs import with_ids


class Paths:
    def __init__(self, store: Store, refresh: float = 300.0) -> None:
        self.store = store
        self.allocations = intellinode.Allocations(refresh)

    @activity.defn(name="choose_path")
    @with_ids
    def choose_path(self, input: ChoosePathInput) -> str:
        """The name of the path this entry takes (the one recorded first, on a retry)."""
        return intellinode.choose(self.store, input.journey_id, input.node, run_key=input.run_key,
                                  user_id=input.user_id, held_out=input.held_out,
                                  allocations=self.allocations, now=input.at)
