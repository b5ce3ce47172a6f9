"""Interpreters 2 to 4 (the router starts 4): the journey by version, no patch markers, payloads
without defaults, the funnel's end recorded by the send that ends the walk; 3 adds sends by run
key (the activity makes the idempotency key) and a result without the seen event ids; 4 names
the entry event that the router's store keeps in activities' inputs instead of copying it, and
leaves the event out of the result. On the time-skipping server, through the router with its
receipts as the API routes; the histories are kept for replay (interpreter-2-* were recorded by
interpreter 2, interpreter-3-* by 3, interpreter-4-* by 4)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.delivery import Delivery, default_providers
from activities.models import KeptEventMissing, SendMessageInput, SendResult, message_key
from activities.policy import DropMessageInput, Policy
from connection.converter import data_converter
from ingestion.router import Router
from journeys.events import Event
from journeys.language.channels import ONLINE_CHANNELS, Channel
from journeys.store import outcomes
from journeys.store.database import Store
from journeys.store.versions import VERSIONS, Versions, keep, version_of
from service.costs import LOCAL_ACTIVITY_MARKER, cost_of
from tests.helpers.support import DownProvider, Harness, examples, running_worker, with_nodes
from workflows.journey import JourneyWorkflow
from workflows.models import INTERPRETER, JourneyInput

QUEUE = "interpreters"
CART = {"product_name": "iPhone 14", "price": 799, "currency": "EUR",
        "product_url": "https://shop.test/iphone14", "product_image": "https://shop.test/iphone14.png"}
H = timedelta(hours=1)


@pytest.fixture(scope="module")
async def journeys(env: WorkflowEnvironment, store: Store) -> AsyncIterator[Harness]:
    async with running_worker(env.client, store, QUEUE):
        yield Harness(env, store, [examples()["abandoned-cart"]], QUEUE, receipts=True)


async def _started_input(journeys: Harness, journey_id: str, user: str) -> dict[str, Any]:
    history = await journeys.handle(journey_id, user).fetch_history()
    return json.loads(history.events[0].workflow_execution_started_event_attributes.input.payloads[0].data)


async def test_an_entry_holds_its_journey_by_version_and_the_last_send_records_the_end(
        journeys: Harness) -> None:
    journey = examples()["abandoned-cart"]
    await journeys.send("ada", "Added To Cart", CART, event_id="cart-1")
    state = await journeys.result("abandoned-cart", "ada")
    assert (state.status, [m.status for m in state.messages]) == ("finished", ["delivered"] * 3)
    rows = journeys.outbox("ada")
    assert rows[2].content["subject"] == "iPhone 14 is still in your cart"  # by version, rendered
    given = await _started_input(journeys, "abandoned-cart", "ada")
    assert "journey" not in given and given["journey_id"] == "abandoned-cart"
    assert given["version"] == version_of(journey) and given["interpreter"] == INTERPRETER
    history = await journeys.handle("abandoned-cart", "ada").fetch_history()
    kinds = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_MARKER_RECORDED not in kinds  # no patch, no local activity
    assert EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES not in kinds
    sends = [json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data)
             for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert [("message" in s, "end" in s) for s in sends] == [(False, False)] * 2 + [(False, True)]
    # The entry event by its id: the router's claim keeps it whole, and the email above was
    # rendered from it. History holds its id, name and time: no property of it, anywhere.
    assert given["kept_event"] == "cart-1" and "properties" not in given["entry_event"]
    written = History(events=history.events).SerializeToString()
    assert not [v for v in CART.values() if isinstance(v, str) and v.encode() in written]
    assert [(s.get("kept_event"), "event" in s) for s in sends] == [("cart-1", False)] * 3
    # By run key: neither the idempotency key nor the workflow id, nor the end's run key.
    wid = journeys.handle("abandoned-cart", "ada").id
    assert [s["run_key"] for s in sends] == [state.run_key] * 3
    assert not any({"idempotency_key", "workflow_id"} & set(s) for s in sends)
    assert "run_key" not in sends[2]["end"]
    assert [r.idempotency_key for r in rows] == [
        message_key(wid, state.run_key, node) for node in ("push-reminder", "push-followup", "email-product")]
    assert {r.workflow_id for r in rows} == {wid}
    # The result leaves out the ids kept against duplicates and the event (the input has it);
    # the query on the closed run still has both.
    assert state.seen_event_ids == [] and state.event is None
    assert {(m.event_name, m.event_id) for m in state.messages} == {("Added To Cart", "cart-1")}
    queried = await journeys.handle("abandoned-cart", "ada").query(JourneyWorkflow.status)
    assert queried.seen_event_ids == ["cart-1"] and queried.run_key == state.run_key
    assert queried.event is not None and queried.event.id == "cart-1"
    [ended] = outcomes.of_journey(journeys.store, "abandoned-cart", kind="ended", user_id="ada")
    assert ended.nodes == state.path and ended.reason is None and ended.node_id == "email-product"
    assert cost_of(history.events).actions == 7  # start, 3 timers, 3 sends: nothing else
    await journeys.record_history("interpreter-4-abandoned-cart", "abandoned-cart", "ada")


async def test_an_exit_event_records_the_end_with_its_reason(journeys: Harness) -> None:
    await journeys.send("bob", "Added To Cart", CART)
    await journeys.env.sleep(2 * H)  # the first push went out; now in the 4 h delay
    await journeys.send("bob", "Charged", {"amount": 799})
    state = await journeys.result("abandoned-cart", "bob")
    assert state.exit_reason == "exit event 'Charged'"
    [ended] = outcomes.of_journey(journeys.store, "abandoned-cart", kind="ended", user_id="bob")
    assert (ended.reason, ended.nodes) == ("exit event 'Charged'", state.path)
    [converted] = outcomes.of_journey(journeys.store, "abandoned-cart", kind="converted", user_id="bob")
    assert converted.goal == "Charged"
    history = await journeys.handle("abandoned-cart", "bob").fetch_history()
    markers = [e.marker_recorded_event_attributes.marker_name for e in history.events
               if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert markers == [LOCAL_ACTIVITY_MARKER]  # the end's record: no send came after the exit
    await journeys.record_history("interpreter-4-converted", "abandoned-cart", "bob")


async def test_a_journey_that_times_out_during_an_outage_records_both(journeys: Harness) -> None:
    def short(data: dict[str, object]) -> None:
        data["id"], data["timeout"] = "cart-short", "3h"
    journey = with_nodes(examples()["abandoned-cart"], short)
    async with running_worker(journeys.client, journeys.store, "i2-outage",
                              {**default_providers(), Channel.push: DownProvider()}):
        harness = Harness(journeys.env, journeys.store, [journey], "i2-outage", receipts=True)
        await harness.send("cy", "Added To Cart", CART)
        state = await harness.result("cart-short", "cy")
    assert state.exit_reason == "journey timeout (3h)"
    assert [(m.node_id, m.status) for m in state.messages] == [("push-reminder", "cancelled")]
    kinds = {o.kind for o in outcomes.of_journey(journeys.store, "cart-short", user_id="cy")}
    assert kinds == {"timed_out", "ended"}
    await harness.record_history("interpreter-4-timeout-during-outage", "cart-short", "cy")


async def test_a_worker_reads_a_version_it_was_not_given_from_its_store(
        env: WorkflowEnvironment, journeys: Harness) -> None:
    """The router kept the definition in the store; this process forgets it, as a worker in
    another process never knew it: the run reads it from the store."""
    def renamed(data: dict[str, object]) -> None:
        data["id"] = "cart-stored"
    journey = with_nodes(examples()["abandoned-cart"], renamed)
    router = Router(env.client, QUEUE, search_attributes=False, receipts=journeys.store)
    [routed] = await router.route_event([journey], journeys_event("dee"))
    assert routed.action == "started"
    VERSIONS._known.pop((journey.id, version_of(journey)))  # as another process's worker
    state = await journeys.result("cart-stored", "dee")
    assert [m.status for m in state.messages] == ["delivered"] * 3
    assert (journey.id, version_of(journey)) in VERSIONS._known  # read once, then known


def journeys_event(user: str) -> Event:
    return Event(id=f"{user}-cart", name="Added To Cart", user_id=user, properties=CART,
                 time=datetime.now(UTC))


def test_versions_are_kept_once_and_read_back(store: Store) -> None:
    journey = examples()["abandoned-cart"]
    keep(store, [journey])
    keep(store, [journey])  # again: nothing new, no error
    fresh = Versions()
    with pytest.raises(LookupError, match="journey 'abandoned-cart' version 0000 is in none of the 0 stores"):
        fresh.get("abandoned-cart", "0000")
    fresh.use(store)
    assert fresh.get("abandoned-cart", version_of(journey)) == journey


def test_payloads_leave_out_default_values() -> None:
    payload = data_converter.payload_converter.to_payload(SendResult(status="delivered"))
    assert payload is not None and payload.data == b'{"status":"delivered"}'
    assert data_converter.payload_converter.from_payload(payload, SendResult) == SendResult(
        status="delivered")
    given = JourneyInput(journey_id="j", version="v", user_id="u", search_attributes=True)
    payload = data_converter.payload_converter.to_payload(given)
    assert payload is not None
    assert json.loads(payload.data) == {"journey_id": "j", "version": "v", "user_id": "u"}
    assert data_converter.payload_converter.from_payload(payload, JourneyInput) == given


async def test_controllers_read_the_kept_entry_event(env: WorkflowEnvironment, journeys: Harness) -> None:
    """A profile update and a split on the entry event's properties, which their inputs name
    by id (interpreter 4): the activities read the event its receipt keeps."""
    def split(data: dict[str, object]) -> None:
        nodes = data["nodes"]
        assert isinstance(nodes, list)
        data["id"] = "controllers-kept"
        [update] = [n for n in nodes if n["id"] == "remember-product"]
        update["next"] = "pricey"
        nodes.append({"id": "pricey", "type": "split", "otherwise": "wait-email",
                      "branches": [{"when": "event.price > 500", "next": "email-product"}]})
    journey = with_nodes(examples()["controller-between"], split)
    harness = Harness(env, journeys.store, [journey], QUEUE, receipts=True)
    await harness.send("eve", "Added To Cart", CART, event_id="cart-eve")
    state = await harness.result("controllers-kept", "eve")
    assert state.path[-3:] == ["remember-product", "pricey", "email-product"]  # 799 > 500
    assert journeys.store.profile("eve")["last_reminded_product"] == "iPhone 14"
    subjects = [r.content.get("subject") for r in harness.outbox("eve")]
    assert subjects == [None, "iPhone 14 is still in your cart"]
    history = await harness.handle("controllers-kept", "eve").fetch_history()
    inputs = {e.activity_task_scheduled_event_attributes.activity_type.name:
              json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data)
              for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    for name in ("update_profile", "choose_branch"):
        assert (inputs[name]["kept_event"], inputs[name]["kept_in"]) == ("cart-eve", "controllers-kept")
        assert "event" not in inputs[name]


async def test_a_send_whose_kept_event_is_missing_waits_and_sends_nothing(tmp_path: Path) -> None:
    """A worker whose store is not the router's: the send fails (and is retried), nothing goes out
    unpersonalized, and the error says what to check."""
    store = Store(f"sqlite:///{tmp_path / 'other.db'}")
    journey = examples()["abandoned-cart"]
    VERSIONS.add(journey)
    send = SendMessageInput(idempotency_key="k-missing", journey_id=journey.id, workflow_id="w",
                            user_id="ada", node_id="email-product", channel=Channel.email,
                            version=version_of(journey), kept_event="cart-9")
    with pytest.raises(KeptEventMissing, match="'cart-9' of journey 'abandoned-cart' is not in "
                                               "this worker's store"):
        await ActivityEnvironment().run(Delivery(store).send_message, send)
    assert store.outbox_list() == []


@pytest.mark.parametrize("channel", [Channel.in_app, Channel.web_popup, Channel.app_inbox,
                                     Channel.email, Channel.sms, Channel.push])
async def test_a_quiet_hours_drop_reads_the_kept_event_only_where_its_channel_uses_it(
        tmp_path: Path, channel: Channel) -> None:
    """An online channel's message never carries the event (the product page's rule), so its drop
    records itself without the store's copy; any other's drop names its event, so waits for it."""
    store = Store(f"sqlite:///{tmp_path / 'other.db'}")
    message = SendMessageInput(idempotency_key=f"k-drop-{channel.value}", journey_id="abandoned-cart",
                               workflow_id="w", user_id="ada", node_id="n", channel=channel,
                               version="v", kept_event="cart-9")
    drop = Policy(store).drop_message
    if channel not in ONLINE_CHANNELS:
        with pytest.raises(KeptEventMissing):
            ActivityEnvironment().run(drop, DropMessageInput(message=message, reason="night"))
        assert store.outbox_list() == []
        return
    result = ActivityEnvironment().run(drop, DropMessageInput(message=message, reason="night"))
    assert result.status == "dropped_quiet_hours"
    assert [(r.status, r.event_id) for r in store.outbox_list()] == [("dropped_quiet_hours", None)]
