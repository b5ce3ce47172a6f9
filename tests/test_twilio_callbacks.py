"""Twilio's callbacks, end to end with real parts: a worker on the time-skipping server sends
SMS through the Twilio provider to a loopback Messages API, which is told where to call back;
``serve``'s app takes the status callback and the inbound STOP and START, each signed as Twilio
signs them (``X-Twilio-Signature``), and refuses them unsigned or signed wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.delivery import default_providers
from activities.providers.twilio import build
from ingestion.twilio_api import signature
from journeys.language.models import Channel, Journey
from journeys.settings import Settings
from journeys.store import subscriptions
from journeys.store.database import Store
from tests.helpers.serving import serving
from tests.helpers.support import Harness, running_worker
from tests.helpers.vendors import FakeTwilio
from tests.helpers.vendors import serving as vendor

QUEUE = "twilio-callbacks"
SID, TOKEN = "AC" + "0" * 31 + "1", "auth-token"
PUBLIC = "https://journeys.shop.test"  # the address Twilio calls (and signs)
PHONE = "+14155550100"
TIPS = Journey.model_validate({
    "id": "tips", "name": "Tips", "entry": "signed-up",
    "nodes": [
        {"id": "signed-up", "type": "action", "event": "Signed Up", "next": "sms-hello"},
        {"id": "sms-hello", "type": "engagement", "channel": "sms", "message": {"text": "Hello"},
         "next": "wait"},
        {"id": "wait", "type": "delay", "duration": "1d", "next": "sms-tip"},
        {"id": "sms-tip", "type": "engagement", "channel": "sms", "message": {"text": "A tip"}},
    ]})


def settings_for(twilio_url: str, data_dir: Path) -> Settings:
    return Settings(JOURNEYS_TWILIO_ACCOUNT_SID=SID, JOURNEYS_TWILIO_AUTH_TOKEN=TOKEN,
                    JOURNEYS_TWILIO_FROM="+15005550006", JOURNEYS_TWILIO_URL=twilio_url,
                    JOURNEYS_PUBLIC_URL=PUBLIC, JOURNEYS_DATA_DIR=data_dir, JOURNEYS_DIR=data_dir,
                    JOURNEYS_TASK_QUEUE=QUEUE, JOURNEYS_WRITE_KEY="key", JOURNEYS_SEND_TIMEOUT=5)


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilio]:
    with vendor(FakeTwilio(SID, TOKEN)) as server:
        yield server


@pytest.fixture(scope="module")
def api(env: WorkflowEnvironment, data_dir: Path, twilio: FakeTwilio) -> Iterator[str]:
    async def client() -> object:
        return env.client
    with serving(settings_for(twilio.url, data_dir), connect_client=client) as url:
        yield url


@pytest.fixture(scope="module")
async def journeys(env: WorkflowEnvironment, store: Store, data_dir: Path, twilio: FakeTwilio,
                   api: str) -> AsyncIterator[Harness]:
    sms = build(settings_for(twilio.url, data_dir), None, Channel.sms)  # type: ignore[arg-type]
    async with running_worker(env.client, store, QUEUE, {**default_providers(), Channel.sms: sms}):
        yield Harness(env, store, [TIPS], QUEUE)
    await sms.aclose()


async def callback(api: str, path: str, form: dict[str, str], *, signed_as: str = TOKEN,
                   url: str | None = None) -> httpx.Response:
    """POST ``form`` as Twilio does, signed for the public URL (or ``url``) with ``signed_as``."""
    sign = signature(signed_as, url or f"{PUBLIC}{path}", list(form.items()))
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(f"{api}{path}", content=urlencode(form), headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sign})


async def test_a_status_callback_moves_the_message_only_when_twilio_signed_it(
        journeys: Harness, twilio: FakeTwilio, api: str) -> None:
    journeys.store.update_profile("ada", {"phone": PHONE})
    await journeys.send("ada", "Signed Up")
    await journeys.env.sleep(60)  # the first SMS went out; the journey waits a day

    async def sent() -> list[str]:
        return [r.form()["StatusCallback"] for r in twilio.received if r.form().get("To") == PHONE]
    [asked] = await sent()
    assert asked == f"{PUBLIC}/twilio/status"  # where Twilio reports the message's fate
    [row] = journeys.outbox("ada")
    assert row.status == "delivered" and row.provider_message_id
    form = {"MessageSid": row.provider_message_id, "MessageStatus": "undelivered", "ErrorCode": "30003",
            "AccountSid": SID}
    for wrong in (await callback(api, "/twilio/status", form, signed_as="not-the-token"),
                  await callback(api, "/twilio/status", form, url=f"{PUBLIC}/elsewhere"),
                  await callback(api, "/twilio/status", {**form, "MessageStatus": "delivered"},
                                 url=None, signed_as=TOKEN + "x")):
        assert wrong.status_code == 403
    async with httpx.AsyncClient(timeout=10) as http:  # no signature at all
        assert (await http.post(f"{api}/twilio/status", data=form)).status_code == 403
    assert journeys.outbox("ada")[0].status == "delivered"
    done = await callback(api, "/twilio/status", form)
    assert done.status_code == 204
    [row] = journeys.outbox("ada")
    assert (row.status, row.reason) == ("undelivered", "not delivered: carrier error 30003")


async def test_stop_unsubscribes_from_sms_and_start_subscribes_again(
        journeys: Harness, twilio: FakeTwilio, api: str) -> None:
    journeys.store.update_profile("bob", {"phone": "+14155550111"})
    await journeys.send("bob", "Signed Up")
    await journeys.env.sleep(60)
    stop = {"From": "+14155550111", "To": "+15005550006", "Body": " stop ", "MessageSid": "SMx",
            "AccountSid": SID}
    forged = await callback(api, "/twilio/inbound", stop, signed_as="guess")
    assert forged.status_code == 403 and subscriptions.changes(journeys.store, "bob") == []
    answer = await callback(api, "/twilio/inbound", stop)
    assert answer.status_code == 200 and answer.text.endswith("<Response></Response>")
    assert subscriptions.unsubscribed(journeys.store, "bob", "sms") == "unsubscribed from sms"
    [change] = subscriptions.changes(journeys.store, "bob")
    assert (change.how, change.source) == ("sms", "twilio stop")
    # An unknown number: the same answer, nothing changed.
    unknown = await callback(api, "/twilio/inbound", {**stop, "From": "+14155550199"})
    assert unknown.status_code == 200 and unknown.text == answer.text
    # A day later the tip is not sent; START, and a new entry would be.
    state = await journeys.result("tips", "bob")
    assert [(m.node_id, m.status) for m in state.messages] == [
        ("sms-hello", "delivered"), ("sms-tip", "unsubscribed")]
    assert (await callback(api, "/twilio/inbound", {**stop, "Body": "START"})).status_code == 200
    assert subscriptions.unsubscribed(journeys.store, "bob", "sms") is None
    assert [c.source for c in subscriptions.changes(journeys.store, "bob")] == ["twilio stop", "twilio start"]


def test_the_signature_is_twilios() -> None:
    # The example of Twilio's request-validation snippets (twilio-node's validateRequest).
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    form = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675310"), ("Digits", "1234"),
            ("From", "+14158675310"), ("To", "+18005551212")]
    assert signature("12345", url, form) == "GvWf1cFY/Q7PnoempGyD5oXAezc="
