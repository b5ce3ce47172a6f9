"""Many push tokens never stall the worker (issue 15, case 9): a user with 1,000 FCM tokens gets
a push on the newest JOURNEYS_PUSH_MAX_TOKENS, a few requests at a time; another user's webhook
goes out meanwhile; the send heartbeats, so the user leaving (an exit event) reaches it while the
vendor still holds its requests. Real loopback FCM and webhook receiver, a real SQLite store,
the activity in temporalio's ActivityEnvironment, and the whole journey on the dev server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.delivery import Delivery
from activities.models import CancelMessageInput, SendMessageInput
from activities.providers import fcm as fcm_module
from activities.providers import webhook as webhook_module
from activities.providers.fcm import IN_FLIGHT
from activities.providers.registry import build_providers
from journeys.language.models import Channel, Journey
from journeys.settings import Settings
from journeys.store.database import Store
from tests.helpers.support import Harness, dev_server, running_worker
from tests.helpers.vendors import HoldingFCM, WebhookReceiver, service_account, serving

SECRET = "whsec"
PROJECT, EMAIL = "journeys-test", "push@journeys-test.iam.gserviceaccount.com"
TOKENS = [f"token-{i:04d}" for i in range(1000)]  # appended over time: the last are the newest


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'journeys.db'}")


@pytest.fixture
def vendors(tmp_path: Path) -> Iterator[tuple[HoldingFCM, WebhookReceiver, Settings]]:
    fcm = HoldingFCM(PROJECT, EMAIL, "")
    path, public_pem = service_account(tmp_path, f"{fcm.url}/token", PROJECT, EMAIL)
    fcm.public_key_pem = public_pem
    fcm.hold_all = True
    with serving(fcm), serving(WebhookReceiver(SECRET)) as hooks:
        try:
            yield fcm, hooks, Settings(JOURNEYS_FCM_CREDENTIALS=path, JOURNEYS_FCM_URL=fcm.url,
                                       JOURNEYS_WEBHOOK_SECRET=SECRET, JOURNEYS_SEND_TIMEOUT=120,
                                       # the receiver is on loopback: the allowance of --dev
                                       JOURNEYS_EGRESS_ALLOW="127.0.0.0/8,::1/128")
        finally:
            fcm.released.set()


async def until(check: Any) -> None:
    for _ in range(1500):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("never")


def message(user: str, channel: Channel, content: dict[str, Any]) -> SendMessageInput:
    return SendMessageInput(idempotency_key=f"journey/j/{user}:e1:{channel.value}", journey_id="j",
                            workflow_id=f"journey/j/{user}", user_id=user, node_id=channel.value,
                            channel=channel, message=content)


async def test_a_thousand_tokens_take_a_few_slots_and_leave_other_sends_alone(
        store: Store, vendors: tuple[HoldingFCM, WebhookReceiver, Settings]) -> None:
    fcm, hooks, settings = vendors
    push = fcm_module.build(settings, store, Channel.push)
    hook = webhook_module.build(settings, store, Channel.webhook)
    sender = Delivery(store, {Channel.push: push, Channel.webhook: hook}, settings.send_timeout)
    store.update_profile("ada", {"push_tokens": TOKENS})
    store.update_profile("bob", {"hook": f"{hooks.url}/bob"})
    ada = message("ada", Channel.push, {"title": "Hi", "body": "Your cart waits"})
    heartbeats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.append(details)
    try:
        pushing = asyncio.create_task(env.run(sender.send_message, ada))
        await until(lambda: fcm.in_flight == IN_FLIGHT)
        # Another user's webhook while ada's pushes are all held: it goes out and is answered.
        bob = await ActivityEnvironment().run(
            sender.send_message, message("bob", Channel.webhook, {"url": "{{ profile.hook }}", "body": "{}"}))
        assert bob.status == "delivered" and not pushing.done()
        await until(lambda: heartbeats)  # a send that waits says it is alive ...
        env.cancel()  # ... so the user leaving reaches it
        with pytest.raises(asyncio.CancelledError):
            await pushing
        assert fcm.most_in_flight == IN_FLIGHT and fcm.in_flight == IN_FLIGHT  # still held: cut short
        assert set(fcm.per_token()) <= set(TOKENS[-20:])  # the newest JOURNEYS_PUSH_MAX_TOKENS only
        settled = await asyncio.to_thread(ActivityEnvironment().run, sender.cancel_message,
                                          CancelMessageInput(message=ada, reason="exited: Left"))
        assert settled.status == "unknown"  # requests left, no answer: they may have arrived
    finally:
        fcm.released.set()
        await push.aclose()
        await hook.aclose()


@pytest.mark.parametrize("limit", [1, 20, 50])
async def test_the_token_bound_is_a_setting(store: Store, limit: int,
                                            vendors: tuple[HoldingFCM, WebhookReceiver, Settings]) -> None:
    fcm, _, settings = vendors
    fcm.hold_all = False
    push = fcm_module.build(settings.model_copy(update={"push_max_tokens": limit}), store, Channel.push)
    store.update_profile("ada", {"push_tokens": TOKENS})
    try:
        result = await ActivityEnvironment().run(
            Delivery(store, {Channel.push: push}).send_message,
            message("ada", Channel.push, {"title": "Hi", "body": "Your cart waits"}))
    finally:
        await push.aclose()
    assert result.status == "delivered"
    assert sorted(fcm.per_token()) == TOKENS[-limit:] and set(fcm.per_token().values()) == {1}
    assert fcm.most_in_flight <= IN_FLIGHT


# --- the whole journey on the dev server ---------------------------------------------------------

@pytest.fixture(scope="module")
async def devserver() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as env:
        yield env


JOURNEY = Journey.model_validate({
    "id": "cart-push", "name": "Cart push", "entry": "added", "exit_when": ["Left"],
    "nodes": [{"id": "added", "type": "action", "event": "Added", "next": "push"},
              {"id": "push", "type": "engagement", "channel": "push",
               "message": {"title": "Hi", "body": "Your cart waits"}}]})


@pytest.mark.parametrize("fast", [0, 2])
async def test_the_user_leaving_ends_a_send_the_vendor_holds(
        devserver: WorkflowEnvironment, store: Store,
        vendors: tuple[HoldingFCM, WebhookReceiver, Settings], fast: int) -> None:
    """The vendor holds the requests for as long as the test wants; an attempt may take 120 s.
    The exit event ends the journey before the vendor answers: the send's heartbeat carries
    the cancel to it (without one it would wait out the vendor or the attempt's time). With
    ``fast`` tokens answered first, the message reads delivered: those devices have it."""
    fcm, _, settings = vendors
    providers = build_providers(settings, store)
    tokens = TOKENS[:fast] + TOKENS[-20:][fast:]
    fcm.hold_all, fcm.held = not fast, set(tokens[fast:])
    user = f"ada-{fast}"  # one user per case: a journey is entered once
    store.update_profile(user, {"push_tokens": tokens})
    try:
        async with running_worker(devserver.client, store, "many-tokens", providers, send_timeout=120):
            journeys = Harness(devserver, store, [JOURNEY], "many-tokens")
            await journeys.send(user, "Added")
            await until(lambda: fcm.in_flight == IN_FLIGHT and len(fcm.per_token()) >= fast + IN_FLIGHT)
            await asyncio.sleep(0.5)  # the fast tokens' answers reach the activity (loopback: well within)
            await journeys.send(user, "Left")
            state = await asyncio.wait_for(journeys.result("cart-push", user), 60)
            assert fcm.in_flight == IN_FLIGHT  # the vendor still holds them: the exit did not wait
            if not fast:  # (the patched send, with its heartbeat timeout: replayed by test_replay)
                await journeys.record_history("exit-during-held-send", "cart-push", user)
    finally:
        fcm.released.set()
        for provider in {id(p): p for p in providers.values()}.values():
            closing = getattr(provider, "aclose", None)
            if closing:
                await closing()
    status = "delivered" if fast else "unknown"
    assert state.exit_reason and [(m.node_id, m.status) for m in state.messages] == [("push", status)]
    [row] = store.outbox_list(user_id=user)
    assert row.status == status and all(n == 1 for n in fcm.per_token().values())
