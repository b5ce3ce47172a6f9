"""The Twilio provider (SMS and WhatsApp) against a loopback Messages API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from activities.providers import OutgoingMessage, TransientError
from activities.providers.twilio import TwilioProvider, build, missing
from journeys.language.models import Channel
from journeys.settings import Settings
from journeys.store.database import Store
from tests.helpers.support import free_port
from tests.helpers.vendors import Answer, FakeTwilio, assert_words_kept_out, serving, twilio_error

SID = "AC" + "0" * 31 + "1"
TOKEN = "auth-token"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with serving(FakeTwilio(SID, TOKEN)) as server:
        yield server


def settings(url: str, **extra: object) -> Settings:
    values = {"JOURNEYS_TWILIO_ACCOUNT_SID": SID, "JOURNEYS_TWILIO_AUTH_TOKEN": TOKEN,
              "JOURNEYS_TWILIO_FROM": "+15005550006", "JOURNEYS_TWILIO_WHATSAPP_FROM": "+14155238886",
              "JOURNEYS_TWILIO_URL": url, "JOURNEYS_SEND_TIMEOUT": 5, **extra}
    return Settings(**values)  # type: ignore[arg-type]


OPENED: list[TwilioProvider] = []


@pytest.fixture(autouse=True)
async def close_providers() -> AsyncIterator[None]:
    yield
    while OPENED:
        await OPENED.pop().aclose()


def provider(url: str, channel: Channel = Channel.sms, **extra: object) -> TwilioProvider:
    OPENED.append(build(settings(url, **extra), None, channel))  # type: ignore[arg-type]
    return OPENED[-1]


def message(channel: Channel = Channel.sms, phone: str | None = "+14155550100",
            text: str = "Your iPhone 14 is still in your cart") -> OutgoingMessage:
    return OutgoingMessage(idempotency_key="journey/a/ada:e1:sms", journey_id="a", node_id="sms",
                           user_id="ada", channel=channel, content={"text": text},
                           profile={"phone": phone} if phone is not None else {})


def test_missing_names_what_each_channel_needs() -> None:
    assert missing(Settings(), Channel.sms) == [
        "JOURNEYS_TWILIO_ACCOUNT_SID", "JOURNEYS_TWILIO_AUTH_TOKEN", "JOURNEYS_TWILIO_FROM"]
    only_sms = Settings(JOURNEYS_TWILIO_ACCOUNT_SID=SID, JOURNEYS_TWILIO_AUTH_TOKEN=TOKEN,
                        JOURNEYS_TWILIO_FROM="+15005550006")
    assert missing(only_sms, Channel.sms) == []
    assert missing(only_sms, Channel.whatsapp) == ["JOURNEYS_TWILIO_WHATSAPP_FROM"]


async def test_sms_delivered_with_the_message_sid(twilio: FakeTwilio) -> None:
    outcome = await provider(twilio.url).deliver(message())
    assert outcome.status == "delivered"
    assert outcome.provider_message_id == "SM" + "0" * 31 + "1"
    [got] = twilio.received
    assert got.form() == {"To": "+14155550100", "From": "+15005550006",
                          "Body": "Your iPhone 14 is still in your cart"}


async def test_whatsapp_prefixes_both_numbers(twilio: FakeTwilio) -> None:
    outcome = await provider(twilio.url, Channel.whatsapp).deliver(message(Channel.whatsapp))
    assert outcome.status == "delivered"
    [got] = twilio.received
    assert got.form()["To"] == "whatsapp:+14155550100"
    assert got.form()["From"] == "whatsapp:+14155238886"


async def test_whatsapp_numbers_already_prefixed_are_not_prefixed_twice(twilio: FakeTwilio) -> None:
    wa = provider(twilio.url, Channel.whatsapp, JOURNEYS_TWILIO_WHATSAPP_FROM="whatsapp:+14155238886")
    assert (await wa.deliver(message(Channel.whatsapp, phone="whatsapp:+14155550100"))).status == "delivered"
    assert twilio.received[0].form()["To"] == "whatsapp:+14155550100"


@pytest.mark.parametrize("phone", [None, "", "  ", 4155550100])
async def test_no_phone_is_unreachable(twilio: FakeTwilio, phone: object) -> None:
    msg = message()
    msg.profile = {} if phone is None else {"phone": phone}
    outcome = await provider(twilio.url).deliver(msg)
    assert outcome.status == "unreachable"
    assert twilio.received == []


async def test_invalid_number_fails_with_code_and_message(twilio: FakeTwilio) -> None:
    twilio.script.append(twilio_error(400, 21211, "The 'To' number is not a valid phone number."))
    outcome = await provider(twilio.url).deliver(message(phone="+15550000000"))
    assert outcome.status == "failed"
    assert outcome.reason == "Twilio answered 400, error 21211"  # Twilio's words: debug log only
    assert outcome.detail == "The 'To' number is not a valid phone number."


async def test_wrong_credentials_fail(twilio: FakeTwilio) -> None:
    outcome = await provider(twilio.url, JOURNEYS_TWILIO_AUTH_TOKEN="wrong").deliver(message())
    assert outcome.status == "failed"
    assert "401" in (outcome.reason or "") and "20003" in (outcome.reason or "")


async def test_forbidden_fails(twilio: FakeTwilio) -> None:
    twilio.script.append(twilio_error(403, 20003, "Permission Denied"))
    outcome = await provider(twilio.url).deliver(message())
    assert outcome.status == "failed" and "403" in (outcome.reason or "")


@pytest.mark.parametrize("answer", [twilio_error(429, 20429, "Too Many Requests"),
                                    twilio_error(500, 20500, "Internal Server Error"),
                                    Answer(503, "<html>Service Unavailable</html>")])
async def test_429_and_5xx_are_transient(twilio: FakeTwilio, answer: Answer) -> None:
    twilio.script.append(answer)
    with pytest.raises(TransientError, match=str(answer.status)):
        await provider(twilio.url).deliver(message())


async def test_connection_refused_is_transient() -> None:
    with pytest.raises(TransientError):
        await provider(f"http://127.0.0.1:{free_port()}").deliver(message())


async def test_late_answer_is_transient_then_the_retry_delivers(twilio: FakeTwilio) -> None:
    twilio.script.append(Answer(201, {"sid": "SMlate"}, delay=2.0))
    sms = provider(twilio.url, JOURNEYS_SEND_TIMEOUT=0.5)
    started = time.monotonic()
    with pytest.raises(TransientError):
        await sms.deliver(message())
    assert time.monotonic() - started < 1.5
    outcome = await sms.deliver(message())
    assert outcome.status == "delivered" and outcome.provider_message_id
    first, retry = twilio.received
    assert first.form() == retry.form()


async def test_a_retried_failure_keeps_twilios_words_out_of_its_message(twilio: FakeTwilio) -> None:
    """What the SDK logs and the history keeps is the status and code; Twilio's message, which
    may quote the number, only in ``detail`` (logged at debug)."""
    twilio.script.append(twilio_error(503, 20503, "Cannot reach +15550001111 right now"))
    with pytest.raises(TransientError) as raised:
        await provider(twilio.url).deliver(message())
    assert str(raised.value) == "Twilio answered 503, error 20503"
    assert_words_kept_out(raised.value, "+15550001111")


@pytest.mark.parametrize("phone", ["12", "4155550100", "+04155550100", "+1415555010012345",
                                   "whatsapp:+14155550100", "+1415555O100", "+١٤١٥٥٥٥٠١٠٠",
                                   "+1415555\n0100", "tel:+14155550100"])
async def test_a_phone_that_is_not_e164_on_sms_is_unreachable_and_not_sent(
        twilio: FakeTwilio, phone: str) -> None:
    """E.164 only; a whatsapp: number belongs to the WhatsApp channel, never to an SMS."""
    outcome = await provider(twilio.url).deliver(message(phone=phone))
    assert outcome.status == "unreachable" and "E.164" in (outcome.reason or "")
    assert twilio.received == []


@pytest.mark.parametrize(("phone", "sent"), [("+1 (415) 555-0100", "+14155550100"),
                                             (" +44 20 7946 0958 ", "+442079460958")])
async def test_separators_in_a_phone_are_dropped(twilio: FakeTwilio, phone: str, sent: str) -> None:
    assert (await provider(twilio.url).deliver(message(phone=phone))).status == "delivered"
    assert twilio.received[0].form()["To"] == sent


@pytest.mark.parametrize("channel", [Channel.sms, Channel.whatsapp])
@pytest.mark.parametrize("control", ["\x00", "\x1b[31m", "\x07", "\x7f", "\x85", "\u2028", "\x0b"])
async def test_a_text_with_control_characters_fails_and_is_not_sent(
        twilio: FakeTwilio, channel: Channel, control: str) -> None:
    outcome = await provider(twilio.url, channel).deliver(
        message(channel, text=f"Your cart{control} waits"))
    assert outcome.status == "failed" and "control character" in (outcome.reason or "")
    assert twilio.received == []


async def test_newlines_and_tabs_in_a_text_are_sent(twilio: FakeTwilio) -> None:
    text = "Your cart waits:\r\n\tiPhone 14\nsee you"
    assert (await provider(twilio.url).deliver(message(text=text))).status == "delivered"
    assert twilio.received[0].form()["Body"] == text


async def test_a_number_twilio_calls_invalid_or_unsubscribed_is_not_tried_again(
        twilio: FakeTwilio, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'journeys.db'}")
    sms = build(settings(twilio.url), store, Channel.sms)
    OPENED.append(sms)
    twilio.script.append(twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"))
    assert (await sms.deliver(message())).status == "failed"
    again = await sms.deliver(message().model_copy(update={"idempotency_key": "journey/a/ada:e2:sms"}))
    assert (again.status, again.reason) == (
        "unreachable", "the number bounced before (Twilio answered 400, error 21610)")
    assert len(twilio.received) == 1  # the second message made no call
    # A failure that says nothing of the number is not remembered.
    twilio.script.append(twilio_error(400, 21602, "Message body is required."))
    other = message(phone="+14155550111").model_copy(update={"idempotency_key": "journey/a/bo:e1:sms"})
    assert (await sms.deliver(other)).status == "failed"
    assert (await sms.deliver(other.model_copy(update={"idempotency_key": "journey/a/bo:e2:sms"}))
            ).status == "delivered"
    store.engine.dispose()
