"""The webhook provider against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from activities.providers import OutgoingMessage, TransientError
from activities.providers.egress import Egress
from activities.providers.webhook import WebhookProvider, build, missing, signature
from journeys.egress import Policy
from journeys.language.models import Channel
from journeys.settings import Settings
from tests.helpers.support import free_port
from tests.helpers.vendors import Answer, WebhookReceiver, assert_words_kept_out, serving

SECRET = "whsec-test"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with serving(WebhookReceiver(SECRET)) as server:
        yield server


def message(url: str, key: str = "journey/a/ada:e1:send", **content: str) -> OutgoingMessage:
    return OutgoingMessage(idempotency_key=key, journey_id="a", node_id="send", user_id="ada",
                           channel=Channel.webhook, content={"url": url, **content})


OPENED: list[WebhookProvider] = []


@pytest.fixture(autouse=True)
async def close_providers() -> AsyncIterator[None]:
    yield
    while OPENED:
        await OPENED.pop().aclose()


#: The receivers here are on loopback: the allowance ``worker.py --dev`` gives (tests/test_egress.py
#: checks that without it they are refused).
LOOPBACK = Egress(Policy.parse(None, loopback=True))


def provider(timeout: float = 5.0, secret: str = SECRET) -> WebhookProvider:
    OPENED.append(WebhookProvider(secret, timeout, egress=LOOPBACK))
    return OPENED[-1]


def test_missing_names_the_secret_and_build_needs_it() -> None:
    assert missing(Settings(), Channel.webhook) == ["JOURNEYS_WEBHOOK_SECRET"]
    settings = Settings(JOURNEYS_WEBHOOK_SECRET="s", JOURNEYS_SEND_TIMEOUT=3)
    assert missing(settings, Channel.webhook) == []
    built = build(settings, None, Channel.webhook)  # type: ignore[arg-type]
    assert isinstance(built, WebhookProvider) and built.timeout == 3


def test_signature_is_hmac_of_timestamp_and_body() -> None:
    assert signature("k", b'{"a":1}', 1700000000) == (
        "t=1700000000,v1=" + hmac.new(b"k", b'1700000000.{"a":1}', "sha256").hexdigest())


async def test_delivered_signed_json_with_key_and_request_id(receiver: WebhookReceiver) -> None:
    body = '{"user": "ada", "product": "iPhone 14"}'
    outcome = await provider().deliver(message(f"{receiver.url}/hooks/cart", body=body,
                                               **{"headers.X-Tenant": "shop"}))
    assert outcome.status == "delivered" and outcome.provider_message_id == "req-1"
    [got] = receiver.received
    assert got.method == "POST" and got.path == "/hooks/cart"
    assert got.body == body.encode()  # sent as is, not re-serialized
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-tenant"] == "shop"
    assert got.headers["idempotency-key"] == "journey/a/ada:e1:send"
    assert receiver.signature_ok(got)
    t = int(got.headers["x-journeys-signature"].split(",")[0].removeprefix("t="))
    assert abs(t - time.time()) < 10


async def test_method_and_content_type_from_the_message(receiver: WebhookReceiver) -> None:
    outcome = await provider().deliver(message(
        f"{receiver.url}/form", method="put", body="a=1&b=2",
        **{"headers.Content-Type": "application/x-www-form-urlencoded"}))
    assert outcome.status == "delivered"
    [got] = receiver.received
    assert got.method == "PUT" and got.body == b"a=1&b=2"
    assert got.headers["content-type"] == "application/x-www-form-urlencoded"


async def test_a_template_cannot_forge_our_headers(receiver: WebhookReceiver) -> None:
    outcome = await provider().deliver(message(
        receiver.url, body="{}", **{"headers.X-Journeys-Signature": "t=1,v1=00",
                                    "headers.Idempotency-Key": "other", "headers.Content-Length": "9"}))
    assert outcome.status == "delivered"
    [got] = receiver.received
    assert got.headers["idempotency-key"] == "journey/a/ada:e1:send" and receiver.signature_ok(got)


async def test_no_request_id_header_gives_none(receiver: WebhookReceiver) -> None:
    receiver.script.append(Answer(204))
    outcome = await provider().deliver(message(receiver.url, body="{}"))
    assert outcome.status == "delivered" and outcome.provider_message_id is None


async def test_410_is_unreachable(receiver: WebhookReceiver) -> None:
    receiver.script.append(Answer(410, "endpoint removed"))
    outcome = await provider().deliver(message(receiver.url, body="{}"))
    assert outcome.status == "unreachable" and "410" in (outcome.reason or "")


async def test_other_4xx_fails_with_the_status_and_the_body_for_the_debug_log_only(
        receiver: WebhookReceiver) -> None:
    receiver.script.append(Answer(422, "x" * 150 + "y" * 500))
    outcome = await provider().deliver(message(receiver.url, body="{}"))
    assert outcome.status == "failed"
    assert outcome.reason == "webhook answered 422"  # the outbox, history, status
    assert outcome.detail == "x" * 150 + "y" * 50  # the debug log


async def test_a_wrong_secret_is_refused_by_the_receiver(receiver: WebhookReceiver) -> None:
    outcome = await provider(secret="not-the-secret").deliver(message(receiver.url, body="{}"))
    assert outcome.status == "failed" and "401" in (outcome.reason or "")


async def test_redirects_are_not_followed(receiver: WebhookReceiver) -> None:
    receiver.script.append(Answer(302, "", {"Location": "http://127.0.0.1:1/elsewhere"}))
    outcome = await provider().deliver(message(receiver.url, body="{}"))
    assert outcome.status == "failed" and "302" in (outcome.reason or "")
    assert len(receiver.received) == 1


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503])
async def test_retryable_statuses_are_transient(receiver: WebhookReceiver, status: int) -> None:
    receiver.script.append(Answer(status, "busy", {"Retry-After": "7"}))
    with pytest.raises(TransientError, match=str(status)):
        await provider().deliver(message(receiver.url, body="{}"))


async def test_connection_refused_is_transient() -> None:
    with pytest.raises(TransientError):
        await provider().deliver(message(f"http://127.0.0.1:{free_port()}/", body="{}"))


async def test_late_answer_is_transient_and_the_retry_has_the_same_key(receiver: WebhookReceiver) -> None:
    receiver.script.append(Answer(200, "{}", delay=2.0))  # accepted, but answers too late
    hook = provider(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"0\.5 s"):
        await hook.deliver(message(receiver.url, body='{"n": 1}'))
    assert time.monotonic() - started < 1.5
    outcome = await hook.deliver(message(receiver.url, body='{"n": 1}'))
    assert outcome.status == "delivered"
    first, second = receiver.received
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == "journey/a/ada:e1:send"
    assert json.loads(first.body) == json.loads(second.body)


async def test_a_trickling_answer_is_bounded_by_the_whole_attempt() -> None:
    """A server that sends a byte now and then never trips httpx's read timeout."""
    import asyncio

    writers: list[asyncio.StreamWriter] = []

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.close()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(TransientError):
            await provider(timeout=0.6).deliver(message(f"http://127.0.0.1:{port}/", body="{}"))
        assert time.monotonic() - started < 2
    finally:
        server.close()
        for writer in writers:
            writer.close()


async def test_a_header_httpx_cannot_send_fails() -> None:
    outcome = await provider().deliver(message("http://127.0.0.1:1/", body="{}",
                                               **{"headers.X-Name": "Zoë"}))
    assert outcome.status == "failed" and "cannot send" in (outcome.reason or "")


@pytest.mark.parametrize("status", [429, 503])
async def test_a_retried_answer_quoting_the_user_stays_out_of_the_failure(
        receiver: WebhookReceiver, status: int) -> None:
    receiver.script.append(Answer(status, '{"error": "+15550001111 is busy"}'))
    with pytest.raises(TransientError) as raised:
        await provider().deliver(message(receiver.url, body="{}"))
    assert_words_kept_out(raised.value, "+15550001111")
