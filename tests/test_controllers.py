"""Controller nodes, exits and timeouts end to end, on the time-skipping test server."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.delivery import default_providers
from journeys.language.models import Channel, Journey
from journeys.store.database import Store
from tests.helpers.support import DownProvider, Harness, eventually, running_worker

QUEUE = "controllers-test"


def journey(journey_id: str, nodes: list[dict[str, Any]], **fields: Any) -> Journey:
    entry = {"id": "entry", "type": "action", "event": "Added To Cart", "next": nodes[0]["id"]}
    return Journey.model_validate({"id": journey_id, "name": journey_id, "entry": "entry",
                                   "nodes": [entry, *nodes], **fields})


def push(node_id: str, body: str, next_id: str | None = None) -> dict[str, Any]:
    node = {"id": node_id, "type": "engagement", "channel": "push", "message": {"body": body}}
    return {**node, "next": next_id} if next_id else node


SPLIT = journey("split-by-tier", [
    {"id": "by-tier", "type": "split", "otherwise": "push-others",
     "branches": [{"when": "profile.tier == 'gold'", "next": "push-gold"},
                  {"when": "event.price > 500", "next": "push-big"}]},
    push("push-gold", "Gold: {{ event.product_name }}"),
    push("push-big", "Big spender: {{ event.product_name }}"),
    push("push-others", "Hi: {{ event.product_name }}")])
INTELLI = journey("intellinode-manual", [
    {"id": "pick", "type": "intellinode", "mode": "manual",
     "paths": [{"next": "push-a", "percent": 50}, {"next": "push-b", "percent": 50}]},
    push("push-a", "A"), push("push-b", "B")])
TIMEOUT = journey("times-out", [
    push("push-first", "first", "wait-long"),
    {"id": "wait-long", "type": "delay", "duration": "5h", "next": "push-late"},
    push("push-late", "too late")], timeout="2h")
EXIT = journey("exit-node", [push("push-1", "one", "leave"), {"id": "leave", "type": "exit"}])


@pytest.fixture(scope="module")
async def journeys(env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='journeys-ctl-')}/journeys.db")
    async with running_worker(env.client, store, QUEUE):
        yield Harness(env, store, [SPLIT, INTELLI, TIMEOUT, EXIT], QUEUE)


async def test_split_takes_the_first_branch_that_holds(journeys: Harness) -> None:
    journeys.store.update_profile("gold", {"tier": "gold"})
    journeys.store.update_profile("plain", {"tier": "silver"})
    cases = {"gold": ({"price": 900}, "push-gold"), "plain": ({"price": 900}, "push-big"),
             "cheap": ({"price": 10}, "push-others"), "no-price": ({}, "push-others")}
    for user, (props, _) in cases.items():
        await journeys.send(user, "Added To Cart", {"product_name": "iPhone 14", **props})
    for user, (_, expected) in cases.items():
        state = await journeys.result("split-by-tier", user)
        assert state.path == ["entry", "by-tier", expected], user


async def test_manual_intellinode_splits_by_percentages(journeys: Harness) -> None:
    users = [f"ab-{i}" for i in range(20)]
    for user in users:
        await journeys.send(user, "Added To Cart", {"product_name": "x"})
    paths = [(await journeys.result("intellinode-manual", user)).path[-1] for user in users]
    assert set(paths) == {"push-a", "push-b"}  # all 20 on one path: odds of 2 in a million


async def test_journey_timeout_ends_a_long_wait(journeys: Harness) -> None:
    await journeys.send("slow", "Added To Cart", {"product_name": "x"})
    state = await journeys.result("times-out", "slow")
    assert state.exit_reason == "journey timeout (2h)"
    assert [m.node_id for m in state.messages] == ["push-first"]
    [timer] = await journeys.timers("times-out", "slow")  # the 5h delay, cut to what is left
    assert timedelta(hours=2) - timer < timedelta(seconds=1)


async def test_exit_node_ends_the_journey(journeys: Harness) -> None:
    await journeys.send("bye", "Added To Cart", {"product_name": "x"})
    state = await journeys.result("exit-node", "bye")
    assert (state.status, state.path, state.exit_reason) == ("finished", ["entry", "push-1", "leave"], None)


async def test_journey_timeout_during_an_outage_cancels_the_send(journeys: Harness) -> None:
    down = DownProvider()
    async with running_worker(journeys.client, journeys.store, "ctl-outage",
                              {**default_providers(), Channel.push: down}):
        harness = Harness(journeys.env, journeys.store, [TIMEOUT], "ctl-outage")
        await harness.send("stuck", "Added To Cart", {"product_name": "x"})
        state = await harness.result("times-out", "stuck")
        calls = down.calls
        await harness.env.sleep(timedelta(hours=1))
    assert down.calls == calls > 1  # retried until the deadline, never after
    assert state.exit_reason == "journey timeout (2h)"
    assert [(m.node_id, m.status) for m in state.messages] == [("push-first", "cancelled")]
    await journeys.record_history("timeout-during-outage", "times-out", "stuck")
    [row] = journeys.outbox("stuck")
    assert (row.status, row.reason) == ("cancelled", "not sent: journey timeout (2h)")


class DownStore(Store):
    """A store whose profiles cannot be read (the database is down): every controller fails."""

    def profile(self, user_id: str) -> dict[str, Any]:
        raise OSError("database is locked")


STUCK = journey("stuck-split", [
    {"id": "by-tier", "type": "split", "otherwise": "push-others",
     "branches": [{"when": "profile.tier == 'gold'", "next": "push-gold"}]},
    push("push-gold", "Gold"), push("push-others", "Hi")], timeout="2h", exit_when=["Charged"])


async def _stuck_worker_harness(journeys: Harness, queue: str) -> tuple[Harness, DownStore]:
    down = DownStore(str(journeys.store.engine.url))
    return Harness(journeys.env, down, [STUCK], queue), down


async def test_a_controller_that_keeps_failing_ends_at_the_journey_timeout(journeys: Harness) -> None:
    harness, down = await _stuck_worker_harness(journeys, "ctl-stuck")
    async with running_worker(journeys.client, down, "ctl-stuck"):
        await harness.send("wedged", "Added To Cart", {"product_name": "x"})
        state = await harness.result("stuck-split", "wedged")
    # It retried until the journey's 2 h were up, then the user left: not held for good.
    assert (state.status, state.exit_reason) == ("exited", "journey timeout (2h)")
    assert state.path == ["entry", "by-tier"] and state.messages == []
    await harness.record_history("controller-fails-until-timeout", "stuck-split", "wedged")


async def test_an_exit_event_ends_a_controller_that_keeps_failing(journeys: Harness) -> None:
    harness, down = await _stuck_worker_harness(journeys, "ctl-stuck-exit")
    async with running_worker(journeys.client, down, "ctl-stuck-exit"):
        await harness.send("paid", "Added To Cart", {"product_name": "x"})
        handle = harness.handle("stuck-split", "paid")

        async def failing() -> bool:  # the split's activity has failed and is being retried
            pending = (await handle.describe()).raw_description.pending_activities
            return bool(pending) and pending[0].attempt > 1
        assert await eventually(failing)
        await harness.send("paid", "Charged", {"amount": 1})
        state = await harness.result("stuck-split", "paid")
    assert (state.exit_reason, state.path) == ("exit event 'Charged'", ["entry", "by-tier"])
    assert state.messages == []
    await harness.record_history("controller-fails-until-exit", "stuck-split", "paid")
