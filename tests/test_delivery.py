"""Delivery as the worker wires it: providers chosen by settings, the inbox of the online
channels, an attempt bounded in time, and what the outbox records. On the time-skipping server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.delivery import OutgoingMessage, default_providers
from activities.providers import Outcome, delivered
from activities.providers.registry import build_providers
from journeys.events import tracking_id
from journeys.language.models import Channel
from journeys.settings import Settings
from journeys.store.database import Store
from tests.helpers.support import ROOT, Harness, examples, running_worker, with_nodes

QUEUE = "delivery-test"


def starter(data_dir: Path, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    variables = {"PATH": "/usr/bin:/bin", "JOURNEYS_DATA_DIR": str(data_dir), **environ}
    return subprocess.run([sys.executable, "starter.py", *args], cwd=ROOT, env=variables,
                          capture_output=True, text=True, timeout=60)


async def test_online_channels_land_in_the_inbox(env: WorkflowEnvironment, store: Store,
                                                 data_dir: Path) -> None:
    providers = build_providers(Settings(), store)
    async with running_worker(env.client, store, QUEUE, providers):
        journeys = Harness(env, store, [examples()["onboarding-inaction"]], QUEUE)
        store.update_profile("ida", {"first_name": "Ida"})
        await journeys.send("ida", "Signed Up", {"plan": "pro"})
        state = await journeys.result("onboarding-inaction", "ida")
    assert [(m.node_id, m.status) for m in state.messages] == [
        ("push-nudge", "delivered"), ("inbox-nudge", "delivered")]
    rows = {r.node_id: r for r in store.outbox_list(user_id="ida")}
    assert (rows["inbox-nudge"].provider, rows["push-nudge"].provider) == ("inbox", "outbox")
    listed = await asyncio.to_thread(starter, data_dir, "inbox", "ida", "--json")
    assert listed.returncode == 0, listed.stderr
    [message] = json.loads(listed.stdout)
    assert message["node_id"] == "inbox-nudge" and message["channel"] == "app_inbox"
    assert message["content"]["body"] == "Hi Ida, a complete profile gets better picks."
    assert rows["inbox-nudge"].provider_message_id == str(message["id"])
    # The id the app reports an open or click with (Message Opened), naming no user.
    assert message["message_id"] == tracking_id(rows["inbox-nudge"].idempotency_key)
    assert "idempotency_key" not in message
    again = await asyncio.to_thread(starter, data_dir, "inbox", "ida")  # reading never removes
    assert "onboarding-inaction/inbox-nudge app_inbox  Your profile" in again.stdout


class LatePush:
    """Takes the first attempt's message and answers too late; answers the retry at once."""

    name = "late-push"

    def __init__(self) -> None:
        self.keys: list[str] = []

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        self.keys.append(message.idempotency_key)
        if len(self.keys) == 1:
            await asyncio.sleep(5)  # past the attempt's bound
        return delivered(f"late-{len(self.keys)}")


async def test_an_answer_past_the_send_timeout_is_retried_with_the_same_key(
        env: WorkflowEnvironment, store: Store) -> None:
    late = LatePush()
    journey = with_nodes(examples()["engagement-after-action"], lambda d: d.update(id="late"))
    async with running_worker(env.client, store, "late", {**default_providers(), Channel.push: late},
                              send_timeout=0.5):
        journeys = Harness(env, store, [journey], "late")
        await journeys.send("lee", "Added To Cart", {"product_name": "Pixel", "price": 1,
                                                     "product_url": "https://shop.test/p"})
        state = await journeys.result("late", "lee")
    assert [m.status for m in state.messages] == ["delivered", "delivered"]
    assert len(late.keys) == 2 and late.keys[0] == late.keys[1]
    push = next(r for r in store.outbox_list(user_id="lee") if r.node_id == "push-reminder")
    assert (push.status, push.provider_message_id) == ("delivered", "late-2")


def test_providers_says_who_serves_each_channel(data_dir: Path) -> None:
    outbox_only = starter(data_dir, "providers", "--json")
    assert outbox_only.returncode == 0, outbox_only.stderr
    served = {row["channel"]: row for row in json.loads(outbox_only.stdout)}
    assert served["in_app"]["provider"] == "inbox"
    assert served["webhook"]["provider"] == "outbox"
    assert "JOURNEYS_WEBHOOK_SECRET" in served["webhook"]["missing"]
    with_secret = starter(data_dir, "providers", JOURNEYS_WEBHOOK_SECRET="s3cret")
    assert "webhook    webhook" in with_secret.stdout


@pytest.mark.parametrize(("environ", "says"), [
    ({"JOURNEYS_VAPID_PRIVATE_KEY": "notakey", "JOURNEYS_VAPID_SUBJECT": "mailto:ops@shop.test"},
     "web_push (webpush): JOURNEYS_VAPID_PRIVATE_KEY: not a P-256 private key"),
    ({"JOURNEYS_SMTP_HOST": "localhost", "JOURNEYS_EMAIL_FROM": "Shop <shop@shop.test>\r"},
     "JOURNEYS_EMAIL_FROM:"),  # a CRLF .env file: the CR would end the headers early
    ({"JOURNEYS_SMTP_HOST": "localhost", "JOURNEYS_EMAIL_FROM": "a@shop.test, b@shop.test"},
     "JOURNEYS_EMAIL_FROM:"),
])
def test_a_vendor_setting_that_cannot_work_is_said_at_once(data_dir: Path, environ: dict[str, str],
                                                           says: str) -> None:
    done = starter(data_dir, "providers", **environ)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr
