"""The funnel per node, edge and IntelliNODE path (issue 9, section 5): `starter.py stats` and
`starter.py graph FILE --stats`, from a journey played by real workflows on the time-skipping
server (tests/helpers/funnel.py), checked against the workflows' own final states."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from journeys.funnel.graph import to_mermaid
from journeys.funnel.stats import JourneyStats, format_stats, journey_stats
from journeys.store.database import Store
from tests.helpers.funnel import JOURNEY, ODD, Played, play
from tests.helpers.support import run_cli

QUEUE = "funnel"


@pytest.fixture(scope="module")
async def played(env: WorkflowEnvironment, store: Store, worker: None) -> Played:
    return await play(env, store, QUEUE)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("catalog")
    (folder / "shop.json").write_text(JOURNEY.model_dump_json(exclude_none=True))
    return folder


def _node(stats: JourneyStats, node_id: str) -> tuple[int, int]:
    node = next(n for n in stats.nodes if n.node_id == node_id)
    return node.entered, node.exits


async def test_entered_exits_and_edges_per_node(played: Played, store: Store) -> None:
    stats = journey_stats(store, JOURNEY, {"wait": len(played.running)})  # as visibility says
    walks = [state.path for state in played.ended.values()]
    through = Counter(node for path in walks for node in path)
    first = Counter(state.path[2] for state in played.ended.values())  # push-a or push-b
    assert stats.entered == len(played.ended) + len(played.running)
    assert _node(stats, "viewed") == (stats.entered, 0)
    # The running users: their path choice (pick), their push (outbox), their wait (visibility).
    assert _node(stats, "pick")[0] == through["pick"] + len(played.running)
    pushed = sum(_node(stats, n)[0] for n in ("push-a", "push-b"))
    assert pushed == stats.entered
    assert _node(stats, "wait")[0] == through["wait"] + len(played.running)
    exits = Counter(state.path[-1] for state in played.ended.values()
                    if (state.exit_reason or "").startswith("exit event"))
    assert sum(exits.values()) == len(played.unsubscribed) > 0
    assert {n.node_id: n.exits for n in stats.nodes if n.exits} == dict(exits)
    assert _node(stats, "last")[0] == through["last"] == len(played.ended) - len(played.unsubscribed)
    edges = {(e.source, e.target): e.users for e in stats.edges}
    assert edges[("viewed", "pick")] == len(played.ended)  # the running ones have not ended
    assert edges[("push-a", "wait")] == first["push-a"] and edges[("wait", "last")] == through["last"]
    # Along the IntelliNODE's edges: the ended walks, and the running users' recorded choices.
    assert edges[("pick", "push-a")] + edges[("pick", "push-b")] == stats.entered


async def test_intellinode_paths_and_shares(played: Played, store: Store) -> None:
    stats = journey_stats(store, JOURNEY)
    [pick] = stats.intellinodes
    by_path = {p.path: p for p in pick.paths}
    assert list(by_path) == [ODD, "B"] and by_path[ODD].next == "push-a"
    treated = [u for u in [*played.ended, *played.running] if u not in played.control]
    assert sum(p.entered for p in pick.paths) == len(treated)  # the control group left out
    bought = [u for u in played.bought if u not in played.control]
    assert sum(p.converted for p in pick.paths) == len(bought) > 0
    for p in pick.paths:
        assert p.rate == (p.converted / p.entered if p.entered else None)
    assert (by_path[ODD].share, by_path["B"].share) == (0.7, 0.3)  # the live change
    assert pick.source.startswith("set ")
    assert stats.treatment.converted + stats.control.converted == len(played.bought)
    assert stats.control.entered == len(played.control) > 0 and stats.lift is not None


async def test_stats_command_prints_the_new_numbers(
        played: Played, store: Store, env: WorkflowEnvironment, data_dir: Path, catalog: Path) -> None:
    run = run_cli(env, data_dir, QUEUE, "stats", "shop", "--journeys", str(catalog), "--json")
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    assert printed == json.loads(journey_stats(store, JOURNEY).model_dump_json())
    run = run_cli(env, data_dir, QUEUE, "stats", "shop", "--journeys", str(catalog))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == format_stats(journey_stats(store, JOURNEY)), run.stdout
    assert "entered" in run.stdout and "share now 70%" in run.stdout and "wait -> last" in run.stdout


async def test_graph_with_stats(
        played: Played, store: Store, env: WorkflowEnvironment, data_dir: Path, catalog: Path) -> None:
    stats = journey_stats(store, JOURNEY)
    chart = to_mermaid(JOURNEY, stats)
    entered = {n.node_id: n.entered for n in stats.nodes}
    assert f'n_viewed(["viewed<br/>action: did Viewed Product<br/>entered {entered["viewed"]}' in chart
    edges = {(e.source, e.target): e.users for e in stats.edges}
    assert f'n_wait -->|"{edges[("wait", "last")]} users"| n_last' in chart
    # The path name's markup is escaped, with its count, in one label.
    assert f"A #lt;b#gt;#quot;push#quot;#lt;/b#gt; #amp; co 50%, {edges[('pick', 'push-a')]} users" in chart
    assert "<b>" not in chart and '"push"' not in chart
    assert to_mermaid(JOURNEY) != chart and "entered" not in to_mermaid(JOURNEY)
    path = catalog / "shop.json"
    run = run_cli(env, data_dir, QUEUE, "graph", str(path), "--stats")
    assert run.returncode == 0, run.stderr
    assert run.stdout == chart
