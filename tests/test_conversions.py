"""Goals and conversions (issue 9, section 1): a goal event records one conversion in the store
for the entry, with the node the user was at and the IntelliNODE paths they took; a journey that
times out records ``timed_out``. On the time-skipping server, through the real activity."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from journeys import outcomes
from journeys.models import Journey
from journeys.store import Store
from tests.helpers.support import Harness

QUEUE = "conversions"
H = timedelta(hours=1)


def push(node_id: str, next_node: str | None = None) -> dict[str, object]:
    node: dict[str, object] = {"id": node_id, "type": "engagement", "channel": "push",
                               "message": {"body": node_id}}
    return {**node, "next": next_node} if next_node else node


JOURNEY = Journey.model_validate({
    "id": "conv", "name": "Conversions", "entry": "started", "reentry": "after_exit",
    "goals": ["Bought", "Subscribed"], "goal_within": "2d", "timeout": "5d",
    "nodes": [
        {"id": "started", "type": "action", "event": "Started", "next": "pick"},
        {"id": "pick", "type": "intellinode", "mode": "manual",
         "paths": [{"name": "A", "percent": 100, "next": "push-a"},
                   {"name": "B", "percent": 0, "next": "push-b"}]},
        push("push-a", "later"), push("push-b", "later"),
        {"id": "later", "type": "delay", "duration": "1d", "next": "last"},
        {"id": "wait-more", "type": "delay", "duration": "2d"},
        push("last", "wait-more"),
    ]})


@pytest.fixture
def journeys(env: WorkflowEnvironment, store: Store, worker: None) -> Harness:
    return Harness(env, store, [JOURNEY], QUEUE)


def recorded(store: Store, user: str) -> list[outcomes.Outcome]:
    return [o for o in outcomes.of_journey(store, "conv") if o.user_id == user]


async def test_a_goal_records_one_conversion_where_the_user_was(journeys: Harness) -> None:
    await journeys.send("ann", "Started")
    await journeys.env.sleep(2 * H)  # past the push, into the 1 d delay
    await journeys.send("ann", "Bought", {"sku": "x"})
    await journeys.send("ann", "Bought", {"sku": "y"})  # a second goal: the same entry, no more
    await journeys.send("ann", "Subscribed")
    state = await journeys.result("conv", "ann")
    assert state.status == "finished"  # a goal does not end the journey (exit_when would)
    assert [m.node_id for m in state.messages] == ["push-a", "last"]
    assert state.converted == "Bought" and state.conversion_recorded
    [conversion] = recorded(journeys.store, "ann")
    assert (conversion.kind, conversion.goal, conversion.node_id) == ("converted", "Bought", "later")
    assert [(p.node, p.path) for p in conversion.paths] == [("pick", "A")]
    assert conversion.run_key == state.run_key
    await journeys.record_history("conversion-recorded", "conv", "ann")


async def test_a_goal_after_goal_within_is_not_a_conversion(journeys: Harness) -> None:
    await journeys.send("ben", "Started")
    await journeys.env.sleep(timedelta(days=2, hours=12))  # in the 2 d delay, past goal_within
    await journeys.send("ben", "Bought")
    state = await journeys.result("conv", "ben")
    assert state.converted is None and recorded(journeys.store, "ben") == []


async def test_a_journey_that_times_out_records_it(journeys: Harness) -> None:
    journey = JOURNEY.model_copy(update={"id": "conv", "timeout": timedelta(hours=30)})
    harness = Harness(journeys.env, journeys.store, [journey], QUEUE)
    await harness.send("cat", "Started")
    state = await harness.result("conv", "cat")
    assert (state.exit_reason or "").startswith("journey timeout")
    [timed_out] = recorded(journeys.store, "cat")
    assert (timed_out.kind, timed_out.node_id, timed_out.goal) == ("timed_out", "wait-more", None)
    await harness.record_history("timed-out-recorded", "conv", "cat")


async def test_each_entry_converts_once(journeys: Harness) -> None:
    """Two entries of one user (reentry: after_exit): one conversion each, apart."""
    for _ in range(2):
        await journeys.send("dee", "Started")
        await journeys.send("dee", "Bought")
        await journeys.result("conv", "dee")
    runs = recorded(journeys.store, "dee")
    assert [o.kind for o in runs] == ["converted", "converted"]
    assert len({o.run_key for o in runs}) == 2
