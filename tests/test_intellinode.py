"""IntelliNODE, both modes (issue 9, section 2): each user's path is chosen by the
``choose_path`` activity from the store (recorded in history, so replay is deterministic);
automated mode learns by Thompson sampling with a minimum share per path; manual percentages,
a winner, or a reset change live through ``starter.py intellinode``."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from journeys.language.models import IntelliNode, Journey
from journeys.language.problems import UsageError
from journeys.store import intellinode, outcomes
from journeys.store.database import OutboxRow, Store
from journeys.store.intellinode import Allocations, PathResult
from tests.helpers.support import Harness, eventually, run_cli, running_worker

QUEUE = "intellinode"


def journey(journey_id: str, mode: str, percents: tuple[int, int] = (50, 50)) -> Journey:
    """Entered on "Started <journey_id>", a push per path, an hour before it ends."""
    paths: list[dict[str, object]] = [{"name": n, "next": f"push-{n}"} for n in ("a", "b")]
    if mode == "manual":
        paths = [{**p, "percent": pct} for p, pct in zip(paths, percents, strict=True)]
    push = [{"id": f"push-{n}", "type": "engagement", "channel": "push", "message": {"body": n},
             "next": "linger"} for n in ("a", "b")]
    return Journey.model_validate({
        "id": journey_id, "name": journey_id, "entry": "started", "goals": ["Bought"],
        "nodes": [{"id": "started", "type": "action", "event": f"Started {journey_id}",
                   "next": "pick"},
                  {"id": "pick", "type": "intellinode", "mode": mode, "paths": paths},
                  *push, {"id": "linger", "type": "delay", "duration": "1h"}]})


LEARNS, MANUAL = journey("learns", "automated"), journey("manual", "manual", (70, 30))


def node_of(j: Journey) -> IntelliNode:
    return intellinode.intellinode(j, "pick")


# --- the bandit, simulated: many users, simulated time, the real store ---------------------

def test_thompson_sampling_moves_users_to_the_better_path(tmp_path: Path) -> None:
    """2 % against 6 %: 30 rounds of 5 minutes, 120 users each. The allocation is recomputed
    once a round (cached in between), the better path's share rises above 70 % and each path
    keeps its 10 % minimum."""
    store = Store(f"sqlite:///{tmp_path / 'bandit.db'}")
    rng, now = random.Random(7), [0.0]
    allocations = Allocations(refresh=300, clock=lambda: now[0], rng=random.Random(8))
    rates, node = {"a": 0.02, "b": 0.06}, node_of(LEARNS)
    start, shares_b, lowest = datetime(2026, 1, 1, tzinfo=UTC), [], 1.0
    for round_ in range(30):
        moment = start + timedelta(minutes=5 * round_)
        taken = []
        for i in range(120):
            run_key, at = f"r{round_}-{i}", moment + timedelta(seconds=i)
            path = intellinode.choose(store, "learns", node, run_key=run_key, user_id=run_key,
                                      held_out=False, allocations=allocations, rng=rng, now=at)
            taken.append(path)
            if rng.random() < rates[path]:
                outcomes.record(store, outcomes.Outcome(
                    journey_id="learns", run_key=run_key, kind="converted", user_id=run_key,
                    workflow_id="simulated", goal="Bought", at=at + timedelta(seconds=1)))
        allocation = allocations.get(store, "learns", node)
        lowest = min(lowest, *allocation.values())
        shares_b.append(taken.count("b") / len(taken))
        now[0] += 300  # five minutes: the next round gets a recomputed allocation
    found = {r.path: r for r in intellinode.results(store, "learns", "pick")}
    print(f"bandit: share of b by round {[round(s, 2) for s in shares_b]}; "
          f"a {found['a'].converted}/{found['a'].entered}, b {found['b'].converted}/{found['b'].entered}")
    assert shares_b[0] < 0.65  # it starts near half and half
    assert sum(shares_b[-5:]) / 5 > 0.70  # the better path's share, in the last rounds
    assert lowest >= 0.10 - 1e-9  # every path keeps its minimum share
    assert found["a"].entered + found["b"].entered == 30 * 120


def test_the_allocation_is_cached_between_refreshes(tmp_path: Path) -> None:
    store, now = Store(f"sqlite:///{tmp_path / 'cache.db'}"), [0.0]
    allocations, node = Allocations(refresh=300, clock=lambda: now[0]), node_of(LEARNS)
    first = allocations.get(store, "learns", node)
    assert allocations.get(store, "learns", node) is first  # within 5 minutes: not recomputed
    now[0] = 301
    assert allocations.get(store, "learns", node) is not first


def test_thompson_shares_keep_the_minimum() -> None:
    found = [PathResult(path="a", entered=1000, converted=0),
             PathResult(path="b", entered=1000, converted=300),
             PathResult(path="c", entered=1000, converted=10)]
    shares = intellinode.thompson(found, min_share=10, rng=random.Random(1))
    assert shares[0] == pytest.approx(0.10) and shares[2] == pytest.approx(0.10)
    assert shares[1] == pytest.approx(0.80) and sum(shares) == pytest.approx(1.0)


def test_a_retried_choice_returns_the_recorded_path(tmp_path: Path) -> None:
    store, node = Store(f"sqlite:///{tmp_path / 'retry.db'}"), node_of(MANUAL)
    picks = {intellinode.choose(store, "manual", node, run_key="k", user_id="u", held_out=False,
                                allocations=Allocations(), rng=random.Random(seed))
             for seed in range(20)}
    assert len(picks) == 1  # the first choice, every time
    assert sum(r.entered for r in intellinode.results(store, "manual", "pick")) == 1


def test_changes_are_checked(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'checks.db'}")
    with pytest.raises(UsageError, match="no path 'c'"):
        intellinode.change(store, MANUAL, "pick", winner="c")
    with pytest.raises(UsageError, match="sum to 90"):
        intellinode.change(store, MANUAL, "pick", percent={"a": 60, "b": 30})
    with pytest.raises(UsageError, match="no IntelliNODE 'push-a'"):
        intellinode.change(store, MANUAL, "push-a", winner="a")
    with pytest.raises(UsageError, match="PATH=PERCENT"):
        intellinode.parse_percent("a:70")


# --- through the interpreter, on the time-skipping server ----------------------------------

@pytest.fixture(scope="module")
async def journeys(env: WorkflowEnvironment, store: Store) -> AsyncIterator[Harness]:
    # Recomputed at every choice here, so that a handful of users shows the learning.
    async with running_worker(env.client, store, QUEUE, intellinode_refresh=0):
        yield Harness(env, store, [LEARNS, MANUAL], QUEUE)


async def _walk(journeys: Harness, journey_id: str, user: str, buy_on: str | None = None) -> str:
    """Enter ``user``; once their push is out, they buy if they took ``buy_on``."""
    await journeys.send(user, f"Started {journey_id}")
    rows = await eventually(lambda: _pushes(journeys, journey_id, user))
    path = rows[0].node_id.removeprefix("push-")
    if path == buy_on:
        await journeys.send(user, "Bought")
    state = await journeys.result(journey_id, user)
    assert state.path[:3] == ["started", "pick", f"push-{path}"]
    return path


async def _pushes(journeys: Harness, journey_id: str, user: str) -> list[OutboxRow]:
    return [row for row in journeys.outbox(user) if row.journey_id == journey_id]


async def test_automated_mode_learns_from_conversions(journeys: Harness) -> None:
    # Nobody buys yet: nothing is known, the shares stay even. (Had they bought on b, the shares
    # would learn within these 16, recomputed at every choice: all 16 on b, now and then.)
    early = [await _walk(journeys, "learns", f"early-{i}") for i in range(16)]
    assert set(early) == {"a", "b"}  # half and half while nothing is known
    later = [await _walk(journeys, "learns", f"later-{i}", buy_on="b") for i in range(30)]
    found = {r.path: r for r in intellinode.results(journeys.store, "learns", "pick")}
    assert found["a"].converted == 0 and 0 < found["b"].converted == later.count("b")
    assert later.count("b") >= 20, later  # at 90 % (the 10 % minimum left to a)
    await journeys.record_history("intellinode-chosen", "learns", "later-0")


async def test_manual_percentages_winner_and_reset_change_live(
        journeys: Harness, data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "manual.json").write_text(MANUAL.model_dump_json(exclude_none=True))

    def cli(*args: str) -> str:
        run = run_cli(journeys.env, data_dir, QUEUE, "intellinode", "manual", "pick",
                      *args, "--journeys", str(folder))
        assert run.returncode == 0, run.stderr
        return run.stdout

    assert "b=100%" in cli("--percent", "a=0,b=100")
    assert {await _walk(journeys, "manual", f"pct-{i}") for i in range(6)} == {"b"}
    assert "winner a" in cli("--winner", "a")
    assert {await _walk(journeys, "manual", f"win-{i}") for i in range(6)} == {"a"}
    shown = cli("--reset")
    assert "now: manual" in shown and "70%" in shown  # the file's percentages again
    assert [line.split(": ", 1)[1] for line in shown.splitlines() if line.startswith("changed")] == [
        "a=0%, b=100%", "winner a", "back to the journey file"]
    bad = run_cli(journeys.env, data_dir, QUEUE, "intellinode", "manual", "pick",
                  "--winner", "c", "--journeys", str(folder))
    assert bad.returncode == 2 and "no path 'c'" in bad.stderr


@pytest.mark.parametrize("change", [{"winner": "b"}, {"percent": {"a": 0, "b": 100}}],
                         ids=["winner", "percent"])
def test_a_change_naming_a_path_the_file_dropped_is_ignored(
        tmp_path: Path, change: dict[str, Any]) -> None:
    """--winner b (or all on b), then the file renames b: the node goes by its file again."""
    store = Store(f"sqlite:///{tmp_path / 'renamed.db'}")
    intellinode.change(store, MANUAL, "pick", **change)
    renamed = Journey.model_validate(MANUAL.model_dump(mode="json") | {"nodes": [
        n if n["id"] != "pick" else n | {"paths": [n["paths"][0], {**n["paths"][1], "name": "c"}]}
        for n in MANUAL.model_dump(mode="json")["nodes"]]})
    node = node_of(renamed)
    assert intellinode.fixed_shares(store, "manual", node) == ({"a": 0.7, "c": 0.3}, "manual")
    path = intellinode.choose(store, "manual", node, run_key="k", user_id="u", held_out=False,
                              allocations=Allocations())
    assert path in {"a", "c"}
