"""Personal data stays out of Temporal (issue 15, case 13): history, the status query and the
journey's result carry codes and classes (``webhook answered 422``, ``missing value``), never a
vendor's words, an address, a phone number, the message's text or a missing value's name.

A real worker on the time-skipping server sends one user's journey through real vendors on
loopback that refuse each message in words that quote it: a webhook receiver that answers 503
and then 422 echoing the body, an SMTP server answering ``550 5.1.1 <address>``, Twilio's 21211
naming the number; then a template that reads a value the profile lacks, and a webhook url on
the metadata address. Every payload of the history is decoded (the JSON converter stores them
base64) and searched.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from activities.providers.registry import build_providers, close_providers
from ingestion.router import Router
from journeys.egress import LOOPBACK
from journeys.language.models import Journey
from journeys.settings import Settings
from journeys.store.database import Store
from tests.helpers.support import Harness, dev_server, examples, running_worker
from tests.helpers.vendors import Answer, FakeTwilio, WebhookReceiver, serving, twilio_error
from tests.test_smtp import RefuseRecipient
from tests.test_smtp import server as smtp_server

QUEUE = "history-privacy"
SECRET = "privacy-secret"
SID, TOKEN = "AC" + "0" * 32, "twilio-token"

EMAIL, PHONE, FIRST, COUPON = "ada.lovelace-77@example.com", "+14155550123", "Adalind", "KEEP-7731"
PROFILE = {"email": EMAIL, "phone": PHONE, "first_name": FIRST, "coupon": COUPON}
#: What may never reach Temporal: the profile's values, the rendered text, the vendors' words.
PRIVATE = [EMAIL, "lovelace", PHONE, "4155550123", FIRST, COUPON, "Recipient address rejected",
           "is not a valid phone number", "We could not process", "metadata-words"]
#: The missing value's name: in the journey's definition (the workflow input) by nature, so it
#: is looked for everywhere but there.
MISSING = "nickname"


def journey(hook_url: str) -> Journey:
    body = ('{"to": "{{ profile.email }}", "text": "Hi {{ profile.first_name }}, '
            'your code {{ profile.coupon }}"}')
    return Journey.model_validate({
        "id": "privacy", "name": "Privacy", "entry": "ordered",
        "nodes": [
            {"id": "ordered", "type": "action", "event": "Ordered", "next": "hook"},
            {"id": "hook", "type": "engagement", "channel": "webhook", "next": "mail",
             "message": {"url": hook_url, "body": body}},
            {"id": "mail", "type": "engagement", "channel": "email", "next": "text",
             "message": {"subject": "Hi {{ profile.first_name }}",
                         "text": "Your code {{ profile.coupon }}"}},
            {"id": "text", "type": "engagement", "channel": "sms", "next": "nick",
             "message": {"text": "Hi {{ profile.first_name }}, code {{ profile.coupon }}"}},
            {"id": "nick", "type": "engagement", "channel": "webhook", "next": "meta",
             "message": {"url": hook_url, "body": '{"hi": "{{ profile.nickname }}"}'}},
            {"id": "meta", "type": "engagement", "channel": "webhook",
             "message": {"url": "http://169.254.169.254/latest/meta-data/", "body": "{}"}}]})


def decoded(node: Any) -> Iterator[str]:
    """Every string in a history's JSON, and every base64 string decoded (payloads' data)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from decoded(value)
    elif isinstance(node, list):
        for value in node:
            yield from decoded(value)
    elif isinstance(node, str):
        yield node
        with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
            yield base64.b64decode(node, validate=True).decode("utf-8")


@pytest.fixture(params=["time-skipping", "dev"])
async def server(request: pytest.FixtureRequest,
                 env: WorkflowEnvironment) -> AsyncIterator[tuple[str, WorkflowEnvironment]]:
    """Both servers: the dev server also keeps a retried attempt's failure (ActivityTaskStarted's
    last_failure) and the workflow's current details, as a production cluster does."""
    if request.param == "time-skipping":
        yield request.param, env
    else:
        async with dev_server() as environment:
            yield request.param, environment


async def test_history_query_and_result_hold_codes_only(
        server: tuple[str, WorkflowEnvironment], tmp_path: Path) -> None:
    kind, env = server
    store = Store(f"sqlite:///{tmp_path / 'journeys.db'}")  # each server's own: no bounce known
    with serving(WebhookReceiver(SECRET)) as receiver, serving(FakeTwilio(SID, TOKEN)) as twilio:
        echo = {"error": "We could not process",
                "received": {"to": EMAIL, "text": f"Hi {FIRST}, your code {COUPON}"}}
        receiver.script += [Answer(503, echo), Answer(422, echo)]
        twilio.script.append(twilio_error(400, 21211,
                                          f"The 'To' number {PHONE} is not a valid phone number."))
        refusing = RefuseRecipient(f"550 5.1.1 <{EMAIL}>: Recipient address rejected")
        for smtp_controller in smtp_server(refusing):
            settings = Settings(
                _env_file=None, JOURNEYS_WEBHOOK_SECRET=SECRET, JOURNEYS_EGRESS_ALLOW=LOOPBACK,
                JOURNEYS_SMTP_HOST="127.0.0.1", JOURNEYS_SMTP_PORT=smtp_controller.port,
                JOURNEYS_SMTP_TLS="none", JOURNEYS_EMAIL_FROM="shop@shop.test",
                JOURNEYS_TWILIO_ACCOUNT_SID=SID, JOURNEYS_TWILIO_AUTH_TOKEN=TOKEN,
                JOURNEYS_TWILIO_FROM="+15005550006", JOURNEYS_TWILIO_URL=twilio.url)
            providers = build_providers(settings, store)
            try:
                async with running_worker(env.client, store, QUEUE, providers):
                    # Routed as the API routes (receipts): the sends name the kept event.
                    journeys = Harness(env, store, [journey(f"{receiver.url}/in")], QUEUE,
                                       receipts=True)
                    store.update_profile("ada", PROFILE)
                    await journeys.send("ada", "Ordered", {"order": "A-1"})
                    state = await journeys.result("privacy", "ada")
                    handle = journeys.handle("privacy", "ada")
                    queried = await handle.query("status")
                    metadata = await _metadata(handle)
                    history = await handle.fetch_history()
            finally:
                await close_providers(providers)
    # The sends were made and refused as the vendors said (the vendors' words were real) ...
    assert len(receiver.received) == 2 and EMAIL.encode() in receiver.received[0].body
    reasons = {m.node_id: (m.status, m.reason) for m in state.messages}
    assert reasons == {
        "hook": ("failed", "not sent: webhook answered 422"),
        "mail": ("failed", "not sent: SMTP recipient refused: 550 5.1.1"),
        "text": ("failed", "not sent: Twilio answered 400, error 21211"),
        "nick": ("skipped", "not sent: missing value"),
        "meta": ("failed", "not sent: egress refused: metadata address")}
    # ... and none of their words, nor the user's data, reached Temporal.
    events = json.loads(history.to_json())["events"]
    everything = "\n".join(decoded(events))
    assert '"not sent: webhook answered 422"' in everything  # (the search does see the results)
    if kind == "dev":  # the retried attempt's failure is kept, as a code
        assert "lastFailure" in json.dumps(events) and "webhook answered 503" in everything
    assert "current_details" in metadata and "status: finished" in metadata  # (the UI's text)
    outside_inputs = "\n".join(decoded([e for e in events if e["eventType"] not in (
        "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED", "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED")]))
    query_text = json.dumps(queried) + metadata
    for words in PRIVATE:
        assert words not in everything, words
        assert words not in query_text, words
        assert words not in state.model_dump_json(), words
    assert MISSING not in outside_inputs and MISSING not in query_text
    assert all(e["eventType"] != EventType.Name(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED)
               for e in events)
    # The outbox row (the local store, which holds the message anyway) has the missing value's
    # name; a vendor's words are in no row (the debug log has them).
    rows = {r.node_id: r for r in store.outbox_list(user_id="ada")}
    assert rows["nick"].reason is not None and MISSING in rows["nick"].reason
    assert rows["nick"].reason.startswith("not sent: missing value — ")
    for row in rows.values():
        for words in ("We could not process", "Recipient address rejected", "is not a valid phone"):
            assert words not in (row.reason or ""), row



async def test_a_profile_date_that_is_none_ends_the_journey_without_its_value(
        env: WorkflowEnvironment, store: Store) -> None:
    """The reason the journey ends (exit reason: status, the UI, history) names the property, not
    the value the user's profile holds."""
    store.update_profile("bea", {"birthday": f"ask {EMAIL}"})
    async with running_worker(env.client, store, QUEUE):
        journeys = Harness(env, store, [examples()["birthday"]], QUEUE)
        await Router(env.client, QUEUE, search_attributes=False).route_profile(
            journeys.journeys, "bea", ["birthday"])
        state = await journeys.result("birthday", "bea")
        history = await journeys.handle("birthday", "bea").fetch_history()
    assert state.exit_reason == "profile.birthday is not a date"
    assert EMAIL not in "\n".join(decoded(json.loads(history.to_json())))


async def _metadata(handle: Any) -> str:
    """The workflow's current details (the Temporal UI's), where the server keeps them."""
    try:
        found = await handle.query("__temporal_workflow_metadata")
    except Exception as exc:  # the time-skipping server has no user metadata
        return f"(no metadata: {type(exc).__name__})"
    return json.dumps(found, default=str)
