"""What a workflow run costs a Temporal cluster and Temporal Cloud, read from its history.

Temporal Cloud bills actions (https://docs.temporal.io/cloud/actions); a cluster stores every
history byte. Counted from the events, so the figure does not vary from run to run:

- a workflow started (by a client, signal-with-start, continue-as-new): one;
- a timer started: one;
- an activity attempt: one per attempt (a retried activity's started event carries its attempt);
- local activities: one per workflow task that ran any;
- a signal received, an update accepted, a signal sent or a child workflow started: one each;
- a search-attribute upsert: one per command, except one that only writes
  ``TemporalChangeVersion`` (what ``workflow.patched`` upserts), which Cloud does not bill.

Not in a history, so not counted here: queries, heartbeats, rejected updates, and a
signal-with-start's signal (counted as the start's).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

__all__ = ["Cost", "cost_of"]

#: Events that are one action each.
_ONE = frozenset({
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
})
#: The marker the SDK records for a local activity's result.
LOCAL_ACTIVITY_MARKER = "core_local_activity"
#: The search attribute ``workflow.patched`` writes: exempt from billing.
CHANGE_VERSION = "TemporalChangeVersion"


@dataclass(frozen=True)
class Cost:
    """One history's (or a mean's) actions, events and bytes (the events as protobuf).

    ``bookkeeping``: the actions among them that a hand-written workflow of the same shape would
    not take (search-attribute upserts and local-activity tasks: where the user is, the funnel's
    records); ``actions - bookkeeping`` is what the shape itself costs (start, timers, activity
    attempts, signals, updates).
    """

    actions: float
    events: float
    bytes: float
    bookkeeping: float = 0

    @property
    def shape(self) -> float:
        """The actions a hand-written workflow of the same shape takes."""
        return self.actions - self.bookkeeping

    @staticmethod
    def mean(costs: Iterable[Cost]) -> Cost:
        found = list(costs)
        if not found:
            return Cost(0, 0, 0)
        n = len(found)
        return Cost(sum(c.actions for c in found) / n, sum(c.events for c in found) / n,
                    sum(c.bytes for c in found) / n, sum(c.bookkeeping for c in found) / n)


def cost_of(events: Iterable[HistoryEvent]) -> Cost:
    """The actions, events and bytes of one run's history."""
    actions = count = size = upserts = 0
    local_tasks: set[int] = set()
    for event in events:
        count += 1
        size += event.ByteSize()
        kind = event.event_type
        if kind in _ONE:
            actions += 1
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            actions += max(event.activity_task_started_event_attributes.attempt, 1)
        elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if set(fields.indexed_fields) - {CHANGE_VERSION}:
                upserts += 1
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == LOCAL_ACTIVITY_MARKER:
                local_tasks.add(marker.workflow_task_completed_event_id)
    bookkeeping = upserts + len(local_tasks)
    return Cost(actions + bookkeeping, count, size, bookkeeping)
