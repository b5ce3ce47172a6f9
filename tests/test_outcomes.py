"""Outcome paths: an engagement node's ``on`` sends the user down the path of what became of the
message (delivered, skipped, failed, unreachable ...), and an outcome without a path goes to
``next``. On the time-skipping server, through the real send activity and a push provider that
answers unreachable for users without a token."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.delivery import default_providers
from activities.providers import Outcome, OutgoingMessage, delivered, unreachable
from journeys.graph import to_mermaid
from journeys.models import Channel, Journey
from journeys.store import Store
from tests.helpers.support import Harness, running_worker

QUEUE = "outcomes"


class TokenPush:
    """Delivers to users with a push token; the others cannot be reached."""

    name = "token-push"

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        if not message.profile.get("push_token"):
            return unreachable("no push token")
        return delivered(f"fcm-{message.idempotency_key[-6:]}")


def after(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "engagement", "channel": "email",
            "message": {"subject": node_id, "text": f"went {node_id}"}}


JOURNEY = Journey.model_validate({
    "id": "outcomes", "name": "Outcome paths", "entry": "tried",
    "nodes": [
        {"id": "tried", "type": "action", "event": "Tried", "next": "push"},
        {"id": "push", "type": "engagement", "channel": "push",
         "message": {"body": "{{ event.word }}"},
         "on": {"skipped": "after-skipped", "failed": "after-failed",
                "unreachable": "after-unreachable"},
         "next": "after-delivered"},
        after("after-delivered"), after("after-skipped"), after("after-failed"),
        after("after-unreachable"),
    ]})


@pytest.fixture(scope="module")
async def journeys(env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='journeys-outcomes-')}/journeys.db")
    providers = {**default_providers(), Channel.push: TokenPush()}
    async with running_worker(env.client, store, QUEUE, providers):
        yield Harness(env, store, [JOURNEY], QUEUE)


@pytest.mark.parametrize("user, profile, props, outcome, path", [
    ("ann", {"push_token": "t-1"}, {"word": "hi"}, "delivered", "after-delivered"),  # next
    ("ben", {"push_token": "t-2"}, {}, "skipped", "after-skipped"),  # no event.word
    ("cat", {"push_token": "t-3"}, {"word": "x" * 5000}, "failed", "after-failed"),  # over 4 KB
    ("dan", {}, {"word": "hi"}, "unreachable", "after-unreachable"),  # no token
])
async def test_the_journey_follows_what_happened(journeys: Harness, user: str,
                                                 profile: dict[str, Any], props: dict[str, Any],
                                                 outcome: str, path: str) -> None:
    journeys.store.update_profile(user, profile)
    await journeys.send(user, "Tried", props)
    state = await journeys.result("outcomes", user)
    assert state.path == ["tried", "push", path]
    assert [(m.node_id, m.status) for m in state.messages] == [("push", outcome), (path, "delivered")]
    rows = {r.node_id: r.status for r in journeys.outbox(user)}
    assert rows == {"push": outcome, path: "delivered"}
    if user == "dan":
        await journeys.record_history("outcome-paths", "outcomes", user)


def test_the_graph_draws_the_outcome_paths() -> None:
    lines = to_mermaid(JOURNEY).splitlines()
    assert '    n_push -->|"otherwise"| n_after_2ddelivered' in lines
    assert '    n_push -->|"skipped"| n_after_2dskipped' in lines
    assert '    n_push -->|"unreachable"| n_after_2dunreachable' in lines
