"""The FCM provider against a loopback OAuth token endpoint and FCM HTTP v1 send."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.providers import OutgoingMessage, TransientError
from activities.providers.fcm import FcmProvider, build, missing
from journeys.events import tracking_id
from journeys.language.models import Channel
from journeys.language.problems import UsageError
from journeys.settings import Settings
from tests.helpers.support import free_port
from tests.helpers.vendors import Answer, FakeFCM, assert_words_kept_out, fcm_error, service_account, serving

PROJECT = "journeys-test"
EMAIL = "push@journeys-test.iam.gserviceaccount.com"
KEY = "journey/cart/ada:e1:push-reminder"


class Profiles:
    """A ProfileEditor over dicts."""

    def __init__(self, profiles: dict[str, dict[str, Any]]) -> None:
        self.profiles = profiles

    def remove_from_profile(self, user_id: str, property: str, value: Any) -> None:
        values = self.profiles.get(user_id, {}).get(property)
        if isinstance(values, list):
            self.profiles[user_id][property] = [v for v in values if v != value]


OPENED: list[FcmProvider] = []


def opened(provider: FcmProvider) -> FcmProvider:
    OPENED.append(provider)
    return provider


@pytest.fixture(autouse=True)
async def close_providers() -> AsyncIterator[None]:
    yield
    while OPENED:
        await OPENED.pop().aclose()


class Setup:
    def __init__(self, fcm: FakeFCM, credentials: Path, profiles: Profiles) -> None:
        self.fcm = fcm
        self.credentials = credentials
        self.profiles = profiles

    def provider(self, timeout: float = 5.0) -> FcmProvider:
        settings = Settings(JOURNEYS_FCM_CREDENTIALS=self.credentials, JOURNEYS_FCM_URL=self.fcm.url,
                            JOURNEYS_SEND_TIMEOUT=timeout)
        return opened(build(settings, self.profiles, Channel.push))

    def message(self, tokens: list[str] | None = None, **content: str) -> OutgoingMessage:
        if tokens is not None:
            self.profiles.profiles["ada"] = {"push_tokens": tokens}
        return OutgoingMessage(
            idempotency_key=KEY, journey_id="cart", node_id="push-reminder", user_id="ada",
            channel=Channel.push, profile=dict(self.profiles.profiles.get("ada", {})),
            content=content or {"title": "Still thinking it over?", "body": "Your iPhone 14 waits.",
                                "deep_link": "https://shop.test/p"})


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    server = FakeFCM(PROJECT, EMAIL, "")
    path, public_pem = service_account(tmp_path, f"{server.url}/token", PROJECT, EMAIL)
    server.public_key_pem = public_pem
    with serving(server):
        yield Setup(server, path, Profiles({}))


def test_missing_and_bad_credentials(tmp_path: Path) -> None:
    assert missing(Settings(), Channel.push) == ["JOURNEYS_FCM_CREDENTIALS"]
    bad = tmp_path / "sa.json"
    bad.write_text('{"type": "service_account"}')
    for path in (bad, tmp_path / "absent.json"):
        settings = Settings(JOURNEYS_FCM_CREDENTIALS=path)
        assert missing(settings, Channel.push) == []
        with pytest.raises(UsageError, match="JOURNEYS_FCM_CREDENTIALS"):
            build(settings, Profiles({}), Channel.push)


async def test_delivered_with_signed_grant_bearer_and_body(setup: Setup) -> None:
    outcome = await setup.provider().deliver(setup.message(["tok-1"]))
    assert outcome.status == "delivered"
    assert outcome.provider_message_id == f"projects/{PROJECT}/messages/0:1"
    grant, send = setup.fcm.received
    assert grant.path == "/token"  # the fake checked the JWT's signature, iss, aud and scope
    assert setup.fcm.tokens_issued == ["ya29.test-1"]
    assert send.path == f"/v1/projects/{PROJECT}/messages:send"
    assert send.headers["authorization"] == "Bearer ya29.test-1"
    assert send.headers["content-type"] == "application/json"
    assert send.json() == {"message": {
        "token": "tok-1",
        "notification": {"title": "Still thinking it over?", "body": "Your iPhone 14 waits."},
        "data": {"deep_link": "https://shop.test/p", "idempotency_key": KEY,
                 "message_id": tracking_id(KEY)}}}


async def test_image_sent_and_absent_fields_left_out(setup: Setup) -> None:
    push = setup.provider()
    await push.deliver(setup.message(["tok-1"], body="Hi", image="https://shop.test/i.png"))
    assert setup.fcm.sends()[0].json()["message"] == {
        "token": "tok-1", "notification": {"body": "Hi", "image": "https://shop.test/i.png"},
        "data": {"idempotency_key": KEY, "message_id": tracking_id(KEY)}}


async def test_access_token_is_cached_until_it_expires(setup: Setup) -> None:
    push = setup.provider()
    for _ in range(3):
        assert (await push.deliver(setup.message(["tok-1"]))).status == "delivered"
    assert setup.fcm.tokens_issued == ["ya29.test-1"]
    expiry = push.tokens.credentials.expiry
    assert expiry is not None
    push.tokens.credentials.expiry = expiry.replace(year=2000)
    assert (await push.deliver(setup.message(["tok-1"]))).status == "delivered"
    assert setup.fcm.tokens_issued == ["ya29.test-1", "ya29.test-2"]
    assert setup.fcm.sends()[-1].headers["authorization"] == "Bearer ya29.test-2"


async def test_refresh_runs_off_the_loop_once_for_concurrent_sends(setup: Setup) -> None:
    setup.fcm.token_delay = 0.5
    push = setup.provider()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    running = asyncio.create_task(ticker())
    try:
        outcomes = await asyncio.gather(*(push.deliver(setup.message(["tok-1"])) for _ in range(3)))
    finally:
        running.cancel()
    assert [o.status for o in outcomes] == ["delivered"] * 3
    assert ticks >= 10  # the loop ran on while the token request waited
    assert setup.fcm.tokens_issued == ["ya29.test-1"]


async def test_revoked_access_token_is_transient_then_renewed(setup: Setup) -> None:
    push = setup.provider()
    await push.deliver(setup.message(["tok-1"]))
    setup.fcm.tokens_issued[0] = "revoked"
    with pytest.raises(TransientError, match="401"):
        await push.deliver(setup.message(["tok-1"]))
    assert (await push.deliver(setup.message(["tok-1"]))).status == "delivered"
    assert setup.fcm.sends()[-1].headers["authorization"] == "Bearer ya29.test-2"


async def test_unregistered_token_removed_and_others_delivered(setup: Setup) -> None:
    setup.fcm.unregistered.add("old")
    outcome = await setup.provider().deliver(setup.message(["old", "tok-1"]))
    assert outcome.status == "delivered" and outcome.provider_message_id
    assert setup.profiles.profiles["ada"]["push_tokens"] == ["tok-1"]
    assert sorted(r.json()["message"]["token"] for r in setup.fcm.sends()) == ["old", "tok-1"]


async def test_every_token_unregistered_is_unreachable_and_all_removed(setup: Setup) -> None:
    setup.fcm.unregistered.update({"a", "b"})
    outcome = await setup.provider().deliver(setup.message(["a", "b"]))
    assert outcome.status == "unreachable" and "unregistered" in (outcome.reason or "")
    assert setup.profiles.profiles["ada"]["push_tokens"] == []


@pytest.mark.parametrize("tokens", [None, [], ["", 7]])
async def test_no_tokens_is_unreachable(setup: Setup, tokens: Any) -> None:
    setup.profiles.profiles["ada"] = {} if tokens is None else {"push_tokens": tokens}
    outcome = await setup.provider().deliver(setup.message())
    assert outcome.status == "unreachable" and setup.fcm.received == []


async def test_a_plain_404_fails_and_removes_nothing(setup: Setup) -> None:
    setup.fcm.script.append(fcm_error(404, "NOT_FOUND", "Requested entity was not found."))
    outcome = await setup.provider().deliver(setup.message(["tok-1"]))
    assert outcome.status == "failed"
    assert setup.profiles.profiles["ada"]["push_tokens"] == ["tok-1"]


async def test_invalid_argument_fails_with_the_reason(setup: Setup) -> None:
    setup.fcm.invalid.add("garbage")
    outcome = await setup.provider().deliver(setup.message(["garbage"]))
    assert outcome.status == "failed"
    assert outcome.reason is not None and outcome.reason.startswith("FCM answered 400 INVALID_ARGUMENT")


@pytest.mark.parametrize("answer", [fcm_error(429, "RESOURCE_EXHAUSTED", "quota", "QUOTA_EXCEEDED"),
                                    fcm_error(500, "INTERNAL", "internal", "INTERNAL"),
                                    fcm_error(503, "UNAVAILABLE", "unavailable", "UNAVAILABLE")])
async def test_429_and_5xx_are_transient(setup: Setup, answer: Answer) -> None:
    setup.fcm.script.append(answer)
    with pytest.raises(TransientError, match=str(answer.status)):
        await setup.provider().deliver(setup.message(["tok-1"]))


@pytest.mark.parametrize(("status", "header", "seconds"), [
    (429, "120", 120), (503, "7", 7), (500, "60", None), (429, "soon", None)])
async def test_retry_after_on_429_and_503_is_carried_to_the_retry(setup: Setup, status: int, header: str,
                                                                  seconds: int | None) -> None:
    answer = fcm_error(status, "UNAVAILABLE", "later", "UNAVAILABLE")
    setup.fcm.script.append(Answer(answer.status, answer.body, {"Retry-After": header}))
    with pytest.raises(TransientError) as raised:
        await setup.provider().deliver(setup.message(["tok-1"]))
    assert raised.value.retry_after == seconds


async def test_late_answer_is_transient_and_the_retry_has_the_same_key(setup: Setup) -> None:
    setup.fcm.script.append(Answer(200, {"name": "late"}, delay=2.0))
    push = setup.provider(timeout=0.7)
    started = time.monotonic()
    with pytest.raises(TransientError):
        await push.deliver(setup.message(["tok-1"]))
    assert time.monotonic() - started < 1.5
    assert (await push.deliver(setup.message(["tok-1"]))).status == "delivered"
    first, retry = setup.fcm.sends()
    assert first.json()["message"]["data"]["idempotency_key"] == KEY
    assert retry.json() == first.json()


async def test_a_key_the_token_endpoint_refuses_is_transient(setup: Setup, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    setup.credentials, _ = service_account(other, setup.fcm.token_uri, PROJECT, EMAIL)  # another key
    with pytest.raises(TransientError, match="FCM access token: RefreshError") as raised:
        await setup.provider().deliver(setup.message(["tok-1"]))
    assert "invalid_grant" in raised.value.detail  # the endpoint's words: debug log only
    assert setup.fcm.sends() == []


async def test_token_endpoint_down_is_transient(setup: Setup, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    setup.credentials, _ = service_account(other, f"http://127.0.0.1:{free_port()}/token", PROJECT, EMAIL)
    with pytest.raises(TransientError, match="access token"):
        await setup.provider().deliver(setup.message(["tok-1"]))


async def test_fcm_down_is_transient(setup: Setup) -> None:
    settings = Settings(JOURNEYS_FCM_CREDENTIALS=setup.credentials,
                        JOURNEYS_FCM_URL=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError):
        await opened(build(settings, setup.profiles, Channel.push)).deliver(setup.message(["tok-1"]))


async def test_unregistered_token_leaves_a_real_store(setup: Setup, tmp_path: Path) -> None:
    from journeys.store.database import Store

    store = Store(f"sqlite:///{tmp_path / 'journeys.db'}")
    store.update_profile("ada", {"first_name": "Ada", "push_tokens": ["old", "tok-1"]})
    setup.fcm.unregistered.add("old")
    settings = Settings(JOURNEYS_FCM_CREDENTIALS=setup.credentials, JOURNEYS_FCM_URL=setup.fcm.url)
    push = opened(build(settings, store, Channel.push))
    message = setup.message()
    message.profile = store.profile("ada")
    assert (await push.deliver(message)).status == "delivered"
    assert store.profile("ada") == {"first_name": "Ada", "push_tokens": ["tok-1"]}


def test_the_registry_picks_these_vendors_once_set(setup: Setup, tmp_path: Path) -> None:
    from activities.providers.registry import build_providers
    from activities.providers.twilio import TwilioProvider
    from activities.providers.webhook import WebhookProvider
    from journeys.store.database import Store

    settings = Settings(
        JOURNEYS_FCM_CREDENTIALS=setup.credentials, JOURNEYS_WEBHOOK_SECRET="s",
        JOURNEYS_TWILIO_ACCOUNT_SID="AC1", JOURNEYS_TWILIO_AUTH_TOKEN="t",
        JOURNEYS_TWILIO_FROM="+15005550006", JOURNEYS_TWILIO_WHATSAPP_FROM="+14155238886")
    providers = build_providers(settings, Store(f"sqlite:///{tmp_path / 'journeys.db'}"))
    assert isinstance(providers[Channel.push], FcmProvider)
    assert isinstance(providers[Channel.webhook], WebhookProvider)
    sms, whatsapp = providers[Channel.sms], providers[Channel.whatsapp]
    assert isinstance(sms, TwilioProvider) and not sms.whatsapp
    assert isinstance(whatsapp, TwilioProvider) and whatsapp.sender == "whatsapp:+14155238886"


async def test_a_retried_answer_keeps_fcms_message_out_of_the_failure(setup: Setup) -> None:
    setup.fcm.script.append(fcm_error(503, "UNAVAILABLE", "token tok-secret-1 busy", "UNAVAILABLE"))
    with pytest.raises(TransientError) as raised:
        await setup.provider().deliver(setup.message(["tok-1"]))
    assert str(raised.value).startswith("FCM answered 503 UNAVAILABLE")
    assert_words_kept_out(raised.value, "tok-secret-1")
