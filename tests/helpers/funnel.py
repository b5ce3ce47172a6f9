"""A journey played by real workflows for the funnel's tests (stats, graph --stats, report):
an IntelliNODE, a control group, conversions, exits by exit_when, and users still running."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.testing import WorkflowEnvironment

from ingestion.router import Router
from journeys.events import Event
from journeys.language.models import IntelliNode, Journey
from journeys.store import intellinode, outcomes
from journeys.store.database import Store
from tests.helpers.support import Harness, eventually
from workflows.models import JourneyState

#: A path name with markup in it: every output must escape it.
ODD = 'A <b>"push"</b> & co'


def _push(node_id: str, next_node: str | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"id": node_id, "type": "engagement", "channel": "push",
                            "message": {"body": node_id}}
    return {**node, "next": next_node} if next_node else node


JOURNEY = Journey.model_validate({
    "id": "shop", "name": "Shop <script>alert(1)</script>", "entry": "viewed", "goals": ["Bought"],
    "exit_when": ["Unsubscribed"], "control_percent": 30, "timeout": "5d",
    "nodes": [
        {"id": "viewed", "type": "action", "event": "Viewed Product", "next": "pick"},
        {"id": "pick", "type": "intellinode", "mode": "manual",
         "paths": [{"name": ODD, "percent": 50, "next": "push-a"},
                   {"name": "B", "percent": 50, "next": "push-b"}]},
        _push("push-a", "wait"), _push("push-b", "wait"),
        {"id": "wait", "type": "delay", "duration": "1d", "next": "last"},
        _push("last"),
    ]})
H = timedelta(hours=1)
PICK = JOURNEY.node("pick")
assert isinstance(PICK, IntelliNode)


@dataclass
class Played:
    ended: dict[str, JourneyState] = field(default_factory=dict)  # user -> final state
    running: list[str] = field(default_factory=list)
    bought: list[str] = field(default_factory=list)
    unsubscribed: list[str] = field(default_factory=list)
    control: set[str] = field(default_factory=set)


def _event(user: str, name: str) -> Event:
    return Event(id=f"e-{uuid.uuid4()}", name=name, user_id=user, time=datetime.now(UTC))


async def play(env: WorkflowEnvironment, store: Store, queue: str, ended: int = 16,
               running: int = 3) -> Played:
    """``ended`` users walk the journey to its end (every 4th buys, every 4th from the second
    unsubscribes in the wait), then ``running`` more enter and stay in the 1 d delay."""
    router = Router(env.client, queue, search_attributes=False, receipts=store)
    harness = Harness(env, store, [JOURNEY], queue)
    played = Played()
    users = [f"shop-{i}" for i in range(ended)]
    played.control = {u for u in users if outcomes.held_out(JOURNEY.id, u, JOURNEY.control_percent)}
    for user in users:
        await router.route_event([JOURNEY], _event(user, "Viewed Product"))
    await eventually(lambda: _sent(store, users))  # every one past its push, in the delay
    for i, user in enumerate(users):
        if i % 4 == 0:
            await router.route_event([JOURNEY], _event(user, "Bought"))
            played.bought.append(user)
        elif i % 4 == 1:
            await router.route_event([JOURNEY], _event(user, "Unsubscribed"))
            played.unsubscribed.append(user)
    for user in users:
        played.ended[user] = await harness.result(JOURNEY.id, user)
    played.running = [f"shop-run-{i}" for i in range(running)]
    for user in played.running:  # nothing awaits their result: the clock stands, they wait
        await router.route_event([JOURNEY], _event(user, "Viewed Product"))
    await eventually(lambda: _sent(store, played.running))
    played.control |= {u for u in played.running
                       if outcomes.held_out(JOURNEY.id, u, JOURNEY.control_percent)}
    # Each workflow chose its path at "pick" through the choose_path activity (path_choices).
    # A live change of the shares after them (starter.py intellinode does the same).
    # Its time on the journeys' clock (the time-skipping server's, ahead of the wall clock).
    latest = max(at for at, _ in intellinode.choices_over_time(store, JOURNEY.id, "pick", H))
    intellinode.change(store, JOURNEY, "pick", percent={ODD: 70, "B": 30}, now=latest + H)
    return played


async def _sent(store: Store, users: list[str]) -> bool:
    await asyncio.sleep(0)
    rows = [r for r in store.outbox_list(journey_id=JOURNEY.id) if r.user_id in users]
    return {r.user_id for r in rows if r.node_id in ("push-a", "push-b")} == set(users)
