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
from journeys.funnel.graph import to_mermaid
from journeys.funnel.stats import format_stats, journey_stats
from journeys.language.models import Channel, Journey
from journeys.store.database import Store
from operate.status import format_status, user_status
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
#: Every channel through the outbox provider (no vendor configured), with a path on delivered.
KEPT = Journey.model_validate({
    "id": "kept", "name": "Kept in the outbox", "entry": "kept-tried",
    "nodes": [
        {"id": "kept-tried", "type": "action", "event": "Kept Tried", "next": "sms"},
        {"id": "sms", "type": "engagement", "channel": "sms", "message": {"text": "hi"},
         "on": {"delivered": "on-path"}, "next": "otherwise"},
        after("on-path"), after("otherwise"),
    ]})


@pytest.fixture(scope="module")
async def journeys(env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='journeys-outcomes-')}/journeys.db")
    providers = {**default_providers(), Channel.push: TokenPush()}
    async with running_worker(env.client, store, QUEUE, providers):
        yield Harness(env, store, [JOURNEY, KEPT], QUEUE)


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
    assert rows == {"push": outcome, path: "kept"}  # the email: the outbox provider
    if user == "dan":
        await journeys.record_history("outcome-paths", "outcomes", user)


async def test_a_message_the_outbox_provider_kept_reads_kept_and_walks_the_delivered_path(
        journeys: Harness) -> None:
    """No vendor configured: the outbox row, ``status`` and ``stats`` say ``kept`` (nobody got
    it), not ``delivered``; the journey walks as it will with a vendor (its delivered path)."""
    await journeys.send("kim", "Kept Tried")
    state = await journeys.result("kept", "kim")
    assert state.path == ["kept-tried", "sms", "on-path"]
    rows = journeys.outbox("kim")
    assert {(r.node_id, r.status, r.provider) for r in rows if r.journey_id == "kept"} == {
        ("sms", "kept", "outbox"), ("on-path", "kept", "outbox")}
    stats = format_stats(journey_stats(journeys.store, KEPT))
    assert "kept" in stats and "delivered" not in stats, stats
    [row] = await user_status(journeys.env.client, [KEPT], "kim", QUEUE, store=journeys.store)
    shown = format_status(row)
    assert "message sms: sms kept" in shown and "delivered" not in shown, shown


def test_the_graph_draws_the_outcome_paths() -> None:
    lines = to_mermaid(JOURNEY).splitlines()
    assert '    n_push -->|"otherwise"| n_after_2ddelivered' in lines
    assert '    n_push -->|"skipped"| n_after_2dskipped' in lines
    assert '    n_push -->|"unreachable"| n_after_2dunreachable' in lines
