"""The product page's scenarios end to end, on the time-skipping Temporal test server.

Every message's rendered text and the event it was personalized with are asserted; the
durable timers' lengths are read back from the workflow history.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.delivery import OutgoingMessage, default_providers
from activities.providers import Outcome, delivered
from ingestion.router import Router
from journeys.language.models import Channel
from journeys.store.database import Store
from tests.helpers.support import DownProvider, Harness, examples, running_worker, with_nodes

CART = {"product_name": "iPhone 14", "price": 799, "currency": "EUR",
        "product_image": "https://shop.test/iphone14.png", "product_url": "https://shop.test/p/iphone14"}
QUEUE = "journeys-test"
H = timedelta(hours=1)


@pytest.fixture(scope="module")
def store() -> Store:
    return Store(f"sqlite:///{tempfile.mkdtemp(prefix='journeys-test-')}/journeys.db")


@pytest.fixture(scope="module")
async def journeys(env: WorkflowEnvironment, store: Store) -> AsyncIterator[Harness]:
    async with running_worker(env.client, store, QUEUE):
        yield Harness(env, store, list(examples().values()), QUEUE)


async def test_abandoned_cart_sends_push_followup_and_email(journeys: Harness) -> None:
    journeys.store.update_profile("ada", {"first_name": "Ada"})
    routed = await journeys.send("ada", "Added To Cart", CART, event_id="cart-1")
    assert [(r.journey_id, r.action) for r in routed] == [
        ("abandoned-cart", "started"), ("cart-from-catalog", "started"), ("controller-between", "started"),
        ("delays-15h", "started"), ("engagement-after-action", "started")]
    state = await journeys.result("abandoned-cart", "ada")
    assert state.status == "finished"
    assert [m.node_id for m in state.messages] == ["push-reminder", "push-followup", "email-product"]
    assert {(m.event_name, m.event_id) for m in state.messages} == {("Added To Cart", "cart-1")}
    rows = [r for r in journeys.outbox("ada") if r.journey_id == "abandoned-cart"]
    assert rows[0].content["body"] == "Hey, the iPhone 14 in your cart is still waiting."
    assert rows[1].content["title"] == "Your cart misses you, Ada"
    assert rows[1].content["body"].startswith("Still interested in iPhone 14? It's still waiting")
    assert rows[2].content["subject"] == "iPhone 14 is still in your cart"
    assert '<img src="https://shop.test/iphone14.png" alt="iPhone 14">' in rows[2].content["html"]
    assert "Price: 799 EUR" in rows[2].content["html"]
    assert {r.status for r in rows} == {"kept"}  # the outbox provider: no vendor
    assert len({r.idempotency_key for r in rows}) == 3
    assert await journeys.send_times("abandoned-cart", "ada") == {
        "push-reminder": 1 * H, "push-followup": 5 * H, "email-product": 25 * H}
    await journeys.record_history("abandoned-cart", "abandoned-cart", "ada")


async def test_sample_flows_keep_the_entry_event(journeys: Harness) -> None:
    # Sent for ada in the first test: engagement after action, 15 h delays, controller between.
    after = await journeys.result("engagement-after-action", "ada")
    assert [m.event_id for m in after.messages] == ["cart-1", "cart-1"]
    delays = await journeys.result("delays-15h", "ada")
    assert await journeys.timers("delays-15h", "ada") == [15 * H, 15 * H]
    assert [m.event_id for m in delays.messages] == ["cart-1", "cart-1"]
    await journeys.record_history("delays-15h", "delays-15h", "ada")
    await journeys.record_history("engagement-after-action", "engagement-after-action", "ada")
    controller = await journeys.result("controller-between", "ada")
    assert controller.path == ["added-to-cart", "wait-push", "push-reminder", "remember-product",
                               "wait-email", "email-product"]
    email = next(r for r in journeys.outbox("ada")
                 if r.journey_id == "controller-between" and r.node_id == "email-product")
    assert email.content["text"] == "Reminder 1: iPhone 14 for 799."
    assert email.event_id == "cart-1"
    assert journeys.store.profile("ada")["last_reminded_product"] == "iPhone 14"
    await journeys.record_history("controller-between", "controller-between", "ada")


async def test_conversion_within_the_hour_sends_nothing(journeys: Harness) -> None:
    await journeys.send("bob", "Added To Cart", CART)
    await journeys.env.sleep(timedelta(minutes=20))
    await journeys.send("bob", "Charged", {"amount": 799})
    state = await journeys.result("abandoned-cart", "bob")
    assert state.status == "exited"
    assert state.messages == []
    assert [r for r in journeys.outbox("bob") if r.journey_id == "abandoned-cart"] == []
    await journeys.record_history("abandoned-cart-converted", "abandoned-cart", "bob")


async def test_exit_event_during_a_delay_stops_later_messages(journeys: Harness) -> None:
    await journeys.send("cy", "Added To Cart", CART)
    await journeys.env.sleep(2 * H)  # the first push went out at 1 h; now in the 4 h delay
    await journeys.send("cy", "Charged", {"amount": 799})
    state = await journeys.result("abandoned-cart", "cy")
    assert state.exit_reason == "exit event 'Charged'"
    assert [m.node_id for m in state.messages] == ["push-reminder"]
    assert "Charged" in state.goals_reached
    await journeys.record_history("abandoned-cart-exit-during-delay", "abandoned-cart", "cy")


async def test_second_action_node_replaces_the_event(journeys: Harness) -> None:
    await journeys.send("dee", "Viewed Product",
                        {"product_name": "iPhone 14", "category": "phones"}, event_id="view-1")
    await journeys.env.sleep(2 * H)
    await journeys.send("dee", "Added To Wishlist",
                        {"product_name": "AirPods Pro", "price": 249, "product_url": "https://shop.test/p/ap"},
                        event_id="wish-1")
    state = await journeys.result("two-action-nodes", "dee")
    assert [(m.node_id, m.event_id) for m in state.messages] == [
        ("push-1", "view-1"), ("push-2", "view-1"), ("push-3", "wish-1"), ("email-4", "wish-1")]
    texts = {r.node_id: r.content for r in journeys.outbox("dee")}
    assert texts["push-2"]["body"] == "iPhone 14 is popular in phones."
    assert texts["push-3"]["body"] == "AirPods Pro is on your wishlist at 249."
    assert texts["email-4"]["text"] == "AirPods Pro costs 249: https://shop.test/p/ap"
    await journeys.record_history("two-action-nodes", "two-action-nodes", "dee")


async def test_inaction_without_conversion(journeys: Harness) -> None:
    journeys.store.update_profile("eve", {"first_name": "Eve"})
    await journeys.send("eve", "Signed Up", {"plan": "pro"}, event_id="signup-1")
    state = await journeys.result("onboarding-inaction", "eve")
    assert await journeys.timers("onboarding-inaction", "eve") == [24 * H]
    rows = {r.node_id: r for r in journeys.outbox("eve")}
    assert rows["push-nudge"].content["title"] == "Welcome to Pro"
    assert rows["push-nudge"].event_id == "signup-1"
    # app_inbox is an online channel: rendered from the profile only
    assert rows["inbox-nudge"].content["body"].startswith("Hi Eve, a complete profile")
    assert rows["inbox-nudge"].event_id is None and state.messages[1].event_name is None
    assert state.status == "finished"
    await journeys.record_history("onboarding-inaction", "onboarding-inaction", "eve")


async def test_date_time_node_fires_the_day_before_at_nine_local(journeys: Harness) -> None:
    journeys.store.update_profile("fay", {"timezone": "Europe/Paris"})
    now = await journeys.env.get_current_time()
    departure = (now + timedelta(days=3)).astimezone(UTC).replace(hour=14, minute=0, second=0, microsecond=0)
    await journeys.send("fay", "Flight Booked", {"destination": "Lisbon", "booking_ref": "XK42",
                                                 "departure_at": departure.isoformat()})
    state = await journeys.result("flight-reminder", "fay")
    handle = journeys.handle("flight-reminder", "fay")
    history = await handle.fetch_history()
    sent_at = next(e.event_time.ToDatetime().replace(tzinfo=UTC) for e in history.events
                   if e.HasField("activity_task_scheduled_event_attributes")
                   and e.activity_task_scheduled_event_attributes.activity_type.name == "send_message")
    paris = sent_at.astimezone(ZoneInfo("Europe/Paris"))
    assert (paris.date(), paris.hour, paris.minute) == ((departure - timedelta(days=1)).date(), 9, 0)
    assert state.messages[0].event_name == "Flight Booked"
    texts = {r.node_id: r.content for r in journeys.outbox("fay")}
    assert texts["sms-tomorrow"]["text"] == "Flight XK42 to Lisbon leaves tomorrow. Check in now."
    await journeys.record_history("flight-reminder", "flight-reminder", "fay")


async def test_missing_value_skips_the_message_and_the_journey_goes_on(journeys: Harness) -> None:
    await journeys.send("gus", "Added To Cart", {"product_name": "iPhone 14", "price": 799,
                                                 "product_url": "https://shop.test/p"})
    state = await journeys.result("abandoned-cart", "gus")
    assert [(m.node_id, m.status) for m in state.messages] == [
        ("push-reminder", "delivered"), ("push-followup", "skipped"), ("email-product", "skipped")]
    # The value's name is in the outbox row only; history and status say "missing value".
    assert [m.reason for m in state.messages][1:] == ["not sent: missing value"] * 2
    skipped = [r for r in journeys.outbox("gus")
               if r.status == "skipped" and r.journey_id == "abandoned-cart"]
    assert skipped[0].reason == ("not sent: missing value — missing value 'event.product_image' "
                                 "in image (no default given)")
    assert state.status == "finished"


async def test_duplicate_events_are_ignored(journeys: Harness) -> None:
    await journeys.send("hal", "Added To Cart", CART, event_id="dup-1")
    again = await journeys.send("hal", "Added To Cart", CART, event_id="dup-1")
    assert ("abandoned-cart", "signalled") in [(r.journey_id, r.action) for r in again]
    state = await journeys.result("abandoned-cart", "hal")
    assert len(state.messages) == 3
    assert len([r for r in journeys.outbox("hal") if r.journey_id == "abandoned-cart"]) == 3


async def test_an_event_counts_only_for_a_wait_begun_before_it(journeys: Harness) -> None:
    def change(doc: dict) -> None:
        doc["id"], doc["entry"] = "wait-after-delay", "start"
        doc["nodes"] = [
            {"id": "start", "type": "action", "event": "Viewed Product", "next": "pause"},
            {"id": "pause", "type": "delay", "duration": "2h", "next": "wished"},
            {"id": "wished", "type": "action", "event": "Added To Wishlist", "within": "1h",
             "next": "push"},
            {"id": "push", "type": "engagement", "channel": "push",
             "message": {"body": "{{ event.product_name }}"}},
        ]
    journey = with_nodes(examples()["two-action-nodes"], change)
    harness = Harness(journeys.env, journeys.store, [journey], QUEUE)
    await harness.send("ivy", "Viewed Product", {"product_name": "Watch"})
    await harness.env.sleep(1 * H)
    await harness.send("ivy", "Added To Wishlist", {"product_name": "Early"})  # during the delay
    state = await harness.result("wait-after-delay", "ivy")
    assert state.messages == []
    assert state.exit_reason == "did not do 'Added To Wishlist' in time"


class FlakyPush:
    """A push provider whose first call for each message fails, as in a provider outage."""

    name = "flaky-push"

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        self.calls.append(message.idempotency_key)
        if self.calls.count(message.idempotency_key) == 1:
            raise ConnectionError("push provider unavailable")
        return delivered()


async def test_outage_delays_a_message_but_never_drops_or_doubles_it(journeys: Harness) -> None:
    flaky = FlakyPush()
    providers = {**default_providers(), Channel.push: flaky}
    async with running_worker(journeys.client, journeys.store, "flaky", providers):
        harness = Harness(journeys.env, journeys.store, [examples()["engagement-after-action"]], "flaky")
        await harness.send("jo", "Added To Cart", CART)
        state = await harness.result("engagement-after-action", "jo")
    push = [r for r in journeys.outbox("jo") if r.node_id == "push-reminder"]
    assert len(push) == 1 and push[0].status == "delivered" and push[0].provider == "flaky-push"
    assert flaky.calls == [push[0].idempotency_key] * 2  # retried with the same key
    assert [m.status for m in state.messages] == ["delivered", "delivered"]


async def test_worker_restart_mid_journey_loses_and_doubles_nothing(journeys: Harness) -> None:
    harness = Harness(journeys.env, journeys.store, [examples()["abandoned-cart"]], "restart")
    # No sticky cache: the test server would hold the next task for the stopped worker's queue.
    async with running_worker(journeys.client, journeys.store, "restart", max_cached_workflows=0):
        await harness.send("kim", "Added To Cart", CART)
        await harness.env.sleep(90 * timedelta(minutes=1))  # the first push is out
    assert [r.node_id for r in journeys.outbox("kim")] == ["push-reminder"]
    async with running_worker(journeys.client, journeys.store, "restart", max_cached_workflows=0):
        state = await harness.result("abandoned-cart", "kim")
    rows = journeys.outbox("kim")
    assert [r.node_id for r in rows] == ["push-reminder", "push-followup", "email-product"]
    assert [m.node_id for m in state.messages] == ["push-reminder", "push-followup", "email-product"]


async def test_profile_date_journey_starts_when_the_date_is_set(journeys: Harness) -> None:
    journeys.store.update_profile("liv", {"first_name": "Liv", "timezone": "America/New_York",
                                          "birthday": "1990-02-14"})
    router = Router(journeys.client, QUEUE, search_attributes=False)
    routed = await router.route_profile(journeys.journeys, "liv", ["birthday"])
    assert [(r.journey_id, r.action) for r in routed] == [("birthday", "started")]
    state = await journeys.result("birthday", "liv")
    assert state.event is None and state.status == "finished"
    email = next(r for r in journeys.outbox("liv") if r.journey_id == "birthday")
    assert email.content["subject"] == "Happy birthday, Liv!"
    history = await journeys.handle("birthday", "liv").fetch_history()
    sent = history.events[-1].event_time.ToDatetime().replace(tzinfo=UTC)
    local = sent.astimezone(ZoneInfo("America/New_York"))
    assert (local.month, local.day, local.hour) == (2, 14, 9)
    await journeys.record_history("birthday", "birthday", "liv")


async def test_leaving_during_an_outage_cancels_the_pending_message(journeys: Harness) -> None:
    down = DownProvider()
    providers = {**default_providers(), Channel.push: down}
    async with running_worker(journeys.client, journeys.store, "outage", providers):
        harness = Harness(journeys.env, journeys.store, [examples()["abandoned-cart"]], "outage")
        await harness.send("nia", "Added To Cart", CART)
        await harness.env.sleep(2 * H)  # the 1 h push has been retrying for an hour
        assert down.calls > 1
        await harness.send("nia", "Charged", {"amount": 799})
        state = await harness.result("abandoned-cart", "nia")
    assert state.exit_reason == "exit event 'Charged'"
    assert [(m.node_id, m.status) for m in state.messages] == [("push-reminder", "cancelled")]
    [row] = journeys.outbox("nia")
    assert (row.status, row.reason) == ("cancelled", "not sent: exit event 'Charged'")
    calls = down.calls
    await journeys.env.sleep(1 * H)
    assert down.calls == calls  # no attempt after the exit
    await journeys.record_history("exit-during-outage", "abandoned-cart", "nia")


class ChangeOfMindPush:
    """Fails its first call, during which the user's profile changes: the retry must send what
    the first attempt rendered (the idempotency key fixes the content), not render again."""

    name = "change-of-mind"

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sent: list[str] = []

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        if not self.sent:
            self.sent.append("failed")
            self.store.update_profile(message.user_id, {"first_name": "Changed"})
            raise ConnectionError("timeout")
        self.sent.append(message.content["title"])
        return delivered()


async def test_a_retry_delivers_the_content_of_the_first_attempt(journeys: Harness) -> None:
    journeys.store.update_profile("oli", {"first_name": "Oli"})
    provider = ChangeOfMindPush(journeys.store)
    async with running_worker(journeys.client, journeys.store, "retry",
                              {**default_providers(), Channel.push: provider}):
        harness = Harness(journeys.env, journeys.store, [examples()["abandoned-cart"]], "retry")
        await harness.send("oli", "Added To Cart", CART)
        state = await harness.result("abandoned-cart", "oli")
    assert provider.sent[:2] == ["failed", "Still thinking it over?"]
    followup = next(r for r in journeys.outbox("oli") if r.node_id == "push-followup")
    assert followup.content["title"] == "Your cart misses you, Changed"  # rendered after the change
    assert [m.status for m in state.messages] == ["delivered"] * 3
