"""The activity that records an entry's outcome (a conversion, a time-out) in the store."""

from __future__ import annotations

from temporalio import activity

from journeys.store import outcomes
from journeys.store.database import Store
from journeys.store.outcomes import Outcome
from telemetry.logs import with_ids


class Outcomes:
    def __init__(self, store: Store) -> None:
        self.store = store

    @activity.defn(name="record_outcome")
    @with_ids
    def record_outcome(self, outcome: Outcome) -> bool:
        """True if recorded now; False if this entry's outcome of this kind was recorded before."""
        return outcomes.record(self.store, outcome)
