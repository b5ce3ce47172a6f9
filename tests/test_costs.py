"""What a run costs, counted from its history (service.costs): Temporal Cloud's billable actions,
history events and bytes. Checked by hand against recorded histories of tests/histories/."""

from __future__ import annotations

import json

import pytest
from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    History,
    HistoryEvent,
    UpsertWorkflowSearchAttributesEventAttributes,
)
from temporalio.client import WorkflowHistory

from service.costs import Cost, cost_of
from tests.helpers.support import ROOT

HISTORIES = ROOT / "tests" / "histories"
#: The budget: Temporal Cloud's billable actions per user of each example journey, as
#: ``make demo`` plays its scenario on the time-skipping server (tests/test_scripts.py holds each
#: run to it). A change that costs more changes this table in the same commit, and says why.
#: Interpreter 2 took one off each that walks to its end (the end record rides on the last send).
BUDGET = {
    ("alice", "abandoned-cart"): 7,
    ("bob", "abandoned-cart"): 5,
    ("carol", "delays-15h"): 5,
    ("dave", "controller-between"): 6,
    ("erin", "two-action-nodes"): 7,
    ("frank", "flight-reminder"): 5,
    ("grace", "onboarding-inaction"): 4,
}


def history(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(name, json.loads((HISTORIES / f"{name}.json").read_text()))


@pytest.mark.parametrize("name, actions, why", [
    ("abandoned-cart", 8, "start, the purchase signal, 3 timers, 3 activity attempts"),
    ("timeout-during-outage", 35, "start, a signal, a send tried 32 times, the cancel record"),
    ("end-recorded", 11, "start, 3 signals, 2 timers, 4 attempts, one task of local activities; "
                         "4 TemporalChangeVersion upserts, which Cloud does not bill"),
    ("exited-by-update", 4, "start, the exit update, one attempt (the other activity was cancelled "
                            "before it started), one task of local activities"),
])
def test_actions_are_counted_as_temporal_cloud_bills_them(name: str, actions: int, why: str) -> None:
    found = history(name)
    cost = cost_of(found.events)
    assert cost.actions == actions, why
    assert cost.events == len(found.events)
    # The events as protobuf: the history's own encoding, less each event's field framing.
    whole = len(History(events=found.events).SerializeToString())
    assert cost.bytes < whole <= cost.bytes + 4 * cost.events


def _upsert(*names: str) -> HistoryEvent:
    fields = {name: Payload(data=b'"x"') for name in names}
    return HistoryEvent(
        event_type=EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
        upsert_workflow_search_attributes_event_attributes=UpsertWorkflowSearchAttributesEventAttributes(
            search_attributes=SearchAttributes(indexed_fields=fields)))


def test_an_upsert_is_billed_unless_it_only_writes_the_change_version() -> None:
    assert cost_of([_upsert("TemporalChangeVersion")]).actions == 0
    assert cost_of([_upsert("JourneyNode")]).actions == 1
    assert cost_of([_upsert("JourneyNode", "TemporalChangeVersion")]).actions == 1
    # Bookkeeping: what a hand-written workflow of the same shape would not pay.
    assert cost_of([_upsert("JourneyNode")]).bookkeeping == 1
    assert cost_of([_upsert("TemporalChangeVersion")]).bookkeeping == 0


def test_the_shape_is_what_a_hand_written_workflow_pays() -> None:
    cost = cost_of(history("end-recorded").events)  # one task of local activities (the end)
    assert (cost.actions, cost.bookkeeping, cost.shape) == (11, 1, 10)


def test_a_mean_of_costs() -> None:
    assert Cost.mean([Cost(8, 30, 7000), Cost(10, 34, 8000)]) == Cost(9, 32, 7500)
    assert Cost.mean([]) == Cost(0, 0, 0)
