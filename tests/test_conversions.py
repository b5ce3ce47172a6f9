"""Goals and conversions (issue 9, section 1): a goal event records one conversion in the store
for the entry, with the node the user was at and the IntelliNODE paths they took; a journey that
times out records ``timed_out``. On the time-skipping server, through the real activity."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from ingestion.router import Router
from journeys.events import Event
from journeys.funnel.stats import journey_stats
from journeys.language.models import Journey
from journeys.store import outcomes
from journeys.store.database import Store
from operate.status import user_status
from tests.helpers.support import Harness, run_cli

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


def _event(user: str, name: str) -> Event:
    return Event(id=f"e-{uuid.uuid4()}", name=name, user_id=user, time=datetime.now(UTC))


def recorded(store: Store, user: str) -> list[outcomes.Outcome]:
    return [o for o in outcomes.of_journey(store, "conv", user_id=user) if o.kind != "ended"]


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
    # Its end: the nodes it went through, for the funnel per node and edge (record-ends).
    [end] = outcomes.of_journey(journeys.store, "conv", kind="ended", user_id="ann")
    assert (end.nodes, end.reason, end.node_id) == (state.path, None, state.path[-1])
    await journeys.record_history("end-recorded", "conv", "ann")
    [row] = await user_status(journeys.client, [JOURNEY], "ann", QUEUE)
    assert (row.converted, row.held_out) == ("Bought", False)  # what `starter.py status` shows


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
    [end] = outcomes.of_journey(journeys.store, "conv", kind="ended", user_id="cat")
    assert (end.node_id, end.nodes, end.reason) == ("wait-more", state.path, state.exit_reason)
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


async def test_a_control_group_walks_the_journey_unmessaged_and_converts_apart(
        journeys: Harness) -> None:
    """control_percent 50: the same users are always held out; their sends are recorded
    held_out (rendered, not sent), and their conversions are marked so."""
    journey = JOURNEY.model_copy(update={"id": "ctl", "control_percent": 50})
    harness = Harness(journeys.env, journeys.store, [journey], QUEUE)
    users = [f"ctl-{i}" for i in range(12)]
    control = {u for u in users if outcomes.held_out("ctl", u, 50)}
    assert control and control != set(users)  # both groups, with these ids
    assert control == {u for u in users if outcomes.held_out("ctl", u, 50)}  # always the same
    for user in users:
        await harness.send(user, "Started")
        await harness.send(user, "Bought")
    for user in users:
        state = await harness.result("ctl", user)
        assert state.held_out == (user in control)
        statuses = {row.status for row in harness.outbox(user) if row.journey_id == "ctl"}
        assert statuses == ({"held_out"} if user in control else {"kept"}), user
        assert [m.node_id for m in state.messages] == ["push-a", "last"]  # the same walk
    held = [row for u in control for row in harness.outbox(u) if row.journey_id == "ctl"]
    assert all(row.provider is None and row.content["body"] for row in held)  # rendered, not sent
    conversions = {o.user_id: o.held_out
                   for o in outcomes.of_journey(journeys.store, "ctl", kind="converted")}
    assert conversions == {u: u in control for u in users}


def test_control_percent_is_between_0_and_100() -> None:
    with pytest.raises(ValueError, match="control_percent"):
        Journey.model_validate({**JOURNEY.model_dump(mode="json"), "control_percent": 101})


async def test_stats_show_the_funnel_and_the_lift(
        journeys: Harness, data_dir: Path, tmp_path: Path) -> None:
    """Entries counted where they start, messages and conversions per node, the control group
    apart; `starter.py stats` prints the same numbers (the time-skipping server cannot count
    who waits where: that column is '-')."""
    journey = JOURNEY.model_copy(update={"id": "funnel", "control_percent": 50})
    router = Router(journeys.client, QUEUE, search_attributes=False, receipts=journeys.store)
    users = [f"fun-{i}" for i in range(12)]
    for i, user in enumerate(users):
        await router.route_event([journey], _event(user, "Started"))
        if i % 2 == 0:
            await router.route_event([journey], _event(user, "Bought"))
    harness = Harness(journeys.env, journeys.store, [journey], QUEUE)
    for user in users:
        await harness.result("funnel", user)
    control = {u for u in users if outcomes.held_out("funnel", u, 50)}
    stats = journey_stats(journeys.store, journey)
    assert stats.entered == 12 and stats.control.entered == len(control)
    assert stats.treatment.converted + stats.control.converted == 6
    assert stats.control.converted == len({u for u in users[::2] if u in control})
    push_a = next(n for n in stats.nodes if n.node_id == "push-a")
    assert push_a.messages == {k: v for k, v in {"kept": 12 - len(control),
                                                 "held_out": len(control)}.items() if v}
    # They bought right after entering: at the node they had reached by then (none yet if the
    # signal came in the run's first task).
    unplaced = sum(o.node_id is None
                   for o in outcomes.of_journey(journeys.store, "funnel", kind="converted"))
    assert sum(n.conversions for n in stats.nodes) + unplaced == 6
    assert set(stats.paths) <= {"pick: A"} and sum(stats.paths.values()) <= 6  # taken by then
    assert stats.lift is not None and stats.lift.low <= stats.lift.difference <= stats.lift.high

    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "funnel.json").write_text(journey.model_dump_json(exclude_none=True))
    run = run_cli(journeys.env, data_dir, QUEUE, "stats", "funnel", "--journeys", str(folder), "--json")
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    assert printed["entered"] == 12 and printed["treatment"] == stats.treatment.model_dump()
    run = run_cli(journeys.env, data_dir, QUEUE, "stats", "funnel", "--journeys", str(folder))
    assert "entered 12" in run.stdout and "push-a" in run.stdout and "lift:" in run.stdout, run.stdout
