"""The funnel is monotonic (issue 15, minor): a node never counts more entries than the node
every way to it passes (its immediate dominator; for a node with one way in, the one before it).

It was not: a running entry was counted only where it was seen (waiting at a node, messaged or
routed by it), not at the nodes it passed to get there, so a split counted the entries that had
ended through it (``entered 1``) and the wait after it the ones waiting there (``entered 15``).
Played by real workflows on the time-skipping server: some users walk the journey to its end,
the others stay in its delays; who waits where comes from the workflows' own state, as
visibility would say it."""

from __future__ import annotations

from collections import Counter

import pytest
from temporalio.testing import WorkflowEnvironment

from journeys.funnel.counts import dominators
from journeys.funnel.stats import JourneyStats, journey_stats
from journeys.language.models import Journey
from journeys.store.database import Store
from tests.helpers.support import Harness, eventually
from workflows.journey import JourneyWorkflow

QUEUE = "funnel-monotonic"


def _push(node_id: str, next_node: str | None = None) -> dict[str, object]:
    node: dict[str, object] = {"id": node_id, "type": "engagement", "channel": "push",
                               "message": {"body": node_id}}
    return {**node, "next": next_node} if next_node else node


#: A split to a push then a wait (gold), or to a wait then a profile update (others); both
#: ways meet at the last push; a profile update before the split leaves no record either.
FORK = Journey.model_validate({
    "id": "fork", "name": "Fork", "entry": "start", "nodes": [
        {"id": "start", "type": "action", "event": "Go", "next": "pause"},
        {"id": "pause", "type": "profile_update", "set": {"entered": "yes"}, "next": "fork"},
        {"id": "fork", "type": "split", "branches": [{"when": "event.tier == 'gold'", "next": "gold-push"}],
         "otherwise": "plain-wait"},
        _push("gold-push", "gold-wait"),
        {"id": "gold-wait", "type": "delay", "duration": "1d", "next": "end-push"},
        {"id": "plain-wait", "type": "delay", "duration": "1d", "next": "tag"},
        {"id": "tag", "type": "profile_update", "set": {"seen": "yes"}, "next": "end-push"},
        _push("end-push")],
    "events": {"Go": {"properties": ["tier"]}}})
ENDED = {"e-gold-0": "gold", "e-plain-0": "plain"}
RUNNING = {**{f"r-gold-{i}": "gold" for i in range(4)}, **{f"r-plain-{i}": "plain" for i in range(11)}}


@pytest.fixture(scope="module")
async def harness(env: WorkflowEnvironment, store: Store, worker: None) -> Harness:
    harness = Harness(env, store, [FORK], QUEUE)
    for user, tier in ENDED.items():
        await harness.send(user, "Go", {"tier": tier})
        await harness.result("fork", user)  # the clock skips: they walk to the end
    for user, tier in RUNNING.items():  # nothing awaits them: they stay in their 1 d delay
        await harness.send(user, "Go", {"tier": tier})
    return harness


async def _waiting(harness: Harness) -> Counter[str] | None:
    """Who waits where, from each running workflow's own state (what visibility counts)."""
    found: Counter[str] = Counter()
    for user in RUNNING:
        state = await harness.handle("fork", user).query(JourneyWorkflow.status)
        if state.current_node not in ("gold-wait", "plain-wait"):
            return None
        found[state.current_node] += 1
    return found


def _entered(stats: JourneyStats) -> dict[str, int]:
    return {n.node_id: n.entered for n in stats.nodes}


def test_dominators_of_the_fork() -> None:
    assert dominators(FORK) == {"start": None, "pause": "start", "fork": "pause",
                                "gold-push": "fork", "gold-wait": "gold-push",
                                "plain-wait": "fork", "tag": "plain-wait", "end-push": "fork"}


async def test_a_node_never_counts_more_than_the_node_before_it(
        harness: Harness, store: Store) -> None:
    waiting = await eventually(lambda: _waiting(harness), timeout=30)
    assert waiting == {"gold-wait": 4, "plain-wait": 11}
    idom = dominators(FORK)
    for seen in (dict(waiting), None):  # with visibility's counts, and without them
        entered = _entered(journey_stats(store, FORK, seen))
        for node_id, before in idom.items():
            if before is not None:
                assert entered[node_id] <= entered[before], (node_id, before, entered, seen)
    entered = _entered(journey_stats(store, FORK, dict(waiting)))
    everyone = len(ENDED) + len(RUNNING)
    # Every entry passed the update and the split; each running one is counted once there,
    # though the gold ones are known both by their push and by their wait.
    assert entered["start"] == entered["pause"] == entered["fork"] == everyone
    assert entered["gold-push"] == entered["gold-wait"] == 1 + 4
    assert entered["plain-wait"] == 1 + 11
    assert entered["tag"] == 1 and entered["end-push"] == 2  # only the ended ones got past
    # Without visibility: the gold ones are known by their push, the others not at all.
    blind = _entered(journey_stats(store, FORK, None))
    assert blind["fork"] == blind["pause"] == 2 + 4 and blind["gold-push"] == 1 + 4
    assert blind["gold-wait"] == 1
    assert blind["plain-wait"] == 1
