"""The SMTP provider and the dev mail sink, against real aiosmtpd servers on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from activities.providers import OutgoingMessage, TransientError
from activities.providers.mailsink import LoopbackController, MailSink, start_dev_sink
from activities.providers.smtp import SmtpProvider, address, build, message_id, missing
from ingestion.router import route_event
from journeys.events import Event
from journeys.language.loader import load_file
from journeys.language.models import Channel
from journeys.language.problems import UsageError
from journeys.settings import Settings
from journeys.store.bounces import Bounces
from journeys.store.database import Store
from tests.helpers.processes import TASK_QUEUE, WorkerProcess
from tests.helpers.support import ROOT, free_port
from tests.helpers.vendors import assert_words_kept_out
from workflows.models import JourneyState

CONTENT = {"subject": "iPhone 14 is still in your cart\n", "html": "<h1>iPhone 14</h1>",
           "text": "iPhone 14 ($799): https://shop.test/p"}


class Recorder:
    """Keeps every message; answers ``reply`` (after ``delay`` seconds, the first ``slow`` times)."""

    def __init__(self, reply: str = "250 OK", delay: float = 0.0, slow: int = 0) -> None:
        self.reply, self.delay, self.slow = reply, delay, slow
        self.received: list[tuple[Envelope, EmailMessage]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = message_from_bytes(envelope.original_content or b"", policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        self.received.append((envelope, parsed))
        if self.slow > 0:
            self.slow -= 1
            await asyncio.sleep(self.delay)
        return self.reply


class RefuseRecipient(Recorder):
    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        return self.reply


def server(handler: Any) -> Iterator[LoopbackController]:
    controller = LoopbackController(handler)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


def settings_for(host: str, port: int, **more: Any) -> Settings:
    values: dict[str, Any] = {"JOURNEYS_SMTP_HOST": host, "JOURNEYS_SMTP_PORT": port,
                              "JOURNEYS_SMTP_TLS": "none", "JOURNEYS_EMAIL_FROM": "Shop <shop@shop.test>"}
    return Settings(**(values | more))


def outgoing(key: str = "journey/cart/ada:entry-1:email-product", email: object = "ada@example.com",
             content: dict[str, str] | None = None) -> OutgoingMessage:
    return OutgoingMessage(idempotency_key=key, journey_id="cart", node_id="email-product", user_id="ada",
                           channel=Channel.email, content=CONTENT if content is None else content,
                           profile={} if email is None else {"email": email})


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, SmtpProvider]]:
    handler = Recorder()
    for controller in server(handler):
        yield handler, SmtpProvider(settings_for(controller.hostname, controller.port))


async def test_delivered_multipart_with_a_stable_message_id(recorder: tuple[Recorder, SmtpProvider]) -> None:
    handler, provider = recorder
    first = await provider.deliver(outgoing())
    again = await provider.deliver(outgoing())
    await provider.deliver(outgoing(key="journey/cart/bob:entry-1:email-product"))
    assert first.status == "delivered" and first.provider_message_id == message_id(outgoing().idempotency_key)
    envelope, email = handler.received[0]
    assert envelope.mail_from == "shop@shop.test" and envelope.rcpt_tos == ["ada@example.com"]
    assert email["From"] == "Shop <shop@shop.test>" and email["To"] == "ada@example.com"
    assert email["Subject"] == "iPhone 14 is still in your cart"  # the template's newline dropped
    assert email.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in email.iter_parts()] == ["text/plain", "text/html"]
    assert email.get_body(("plain",)).get_content().strip() == CONTENT["text"]  # type: ignore[union-attr]
    assert email.get_body(("html",)).get_content().strip() == CONTENT["html"]  # type: ignore[union-attr]
    ids = [received["Message-ID"] for _, received in handler.received]
    assert ids[0] == ids[1] == first.provider_message_id == again.provider_message_id != ids[2]


async def test_one_part_when_html_or_text_is_absent(recorder: tuple[Recorder, SmtpProvider]) -> None:
    handler, provider = recorder
    await provider.deliver(outgoing(content={"subject": "Hi", "html": "<p>Hi</p>"}))
    await provider.deliver(outgoing(content={"subject": "Hi", "text": "Hi"}))
    assert [email.get_content_type() for _, email in handler.received] == ["text/html", "text/plain"]


@pytest.mark.parametrize("email", [None, "", "not an address", "ada@", "@example.com", 42,
                                   "ada@example.com\r\nBcc: eve@example.com", "Ada <ada@example.com>"])
async def test_no_address_is_unreachable(recorder: tuple[Recorder, SmtpProvider], email: object) -> None:
    handler, provider = recorder
    outcome = await provider.deliver(outgoing(email=email))
    assert outcome.status == "unreachable", outcome
    assert handler.received == []


def test_address() -> None:
    assert address("ada@example.com") == "ada@example.com"
    assert address("ada.lovelace+cart@mail.example.co.uk") == "ada.lovelace+cart@mail.example.co.uk"
    assert address("ada example.com") is None


@pytest.mark.parametrize("reply, at", [("550 5.1.1 No such user here", "data"),
                                       ("550 5.1.1 No such user here", "rcpt")])
async def test_5xx_is_failed_with_the_servers_answer(reply: str, at: str) -> None:
    handler = RefuseRecipient(reply) if at == "rcpt" else Recorder(reply)
    for controller in server(handler):
        outcome = await SmtpProvider(settings_for(controller.hostname, controller.port)).deliver(outgoing())
        assert outcome.status == "failed"
        assert outcome.reason in ("SMTP refused: 550 5.1.1", "SMTP recipient refused: 550 5.1.1")
        assert outcome.detail == "550 5.1.1 No such user here"  # the server's words: debug log only


@pytest.mark.parametrize("handler", [Recorder("451 4.3.0 Try again later"),
                                     RefuseRecipient("450 4.2.1 Mailbox busy")])
async def test_4xx_is_transient(handler: Recorder) -> None:
    for controller in server(handler):
        provider = SmtpProvider(settings_for(controller.hostname, controller.port))
        with pytest.raises(TransientError, match=r"45[01]"):
            await provider.deliver(outgoing())


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as closed:  # bound, never listening: the kernel refuses connections
        closed.bind(("127.0.0.1", 0))
        provider = SmtpProvider(settings_for("127.0.0.1", closed.getsockname()[1]))
        with pytest.raises(TransientError, match=r"refused|connect"):
            await provider.deliver(outgoing())


async def test_starttls_not_offered_is_transient() -> None:
    for controller in server(Recorder()):
        settings = settings_for(controller.hostname, controller.port, JOURNEYS_SMTP_TLS="starttls")
        with pytest.raises(TransientError, match="STARTTLS"):
            await SmtpProvider(settings).deliver(outgoing())


async def test_an_answer_too_late_is_transient_and_the_retry_has_the_same_message_id() -> None:
    handler = Recorder(delay=3.0, slow=1)
    for controller in server(handler):
        provider = SmtpProvider(settings_for(controller.hostname, controller.port, JOURNEYS_SEND_TIMEOUT=0.5))
        started = time.monotonic()
        with pytest.raises(TransientError, match="Timeout"):
            await provider.deliver(outgoing())
        elapsed = time.monotonic() - started
        assert 0.5 <= elapsed < 1.5, elapsed  # bounded by send_timeout, not by the server
        retried = await provider.deliver(outgoing())
        assert retried.status == "delivered"
        # The server had the first copy: SMTP cannot take it back, but both carry one id.
        expected = message_id(outgoing().idempotency_key)
        assert [email["Message-ID"] for _, email in handler.received] == [expected, expected]


def test_missing_and_build() -> None:
    bare = Settings(JOURNEYS_SMTP_HOST=None, JOURNEYS_EMAIL_FROM=None)
    assert missing(bare, Channel.email) == ["JOURNEYS_SMTP_HOST", "JOURNEYS_EMAIL_FROM"]
    host_only = bare.model_copy(update={"smtp_host": "mail.test"})
    assert missing(host_only, Channel.email) == ["JOURNEYS_EMAIL_FROM"]
    assert missing(settings_for("mail.test", 587), Channel.email) == []
    assert build(settings_for("mail.test", 587), None, Channel.email).name == "smtp"  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="JOURNEYS_EMAIL_FROM"):
        build(settings_for("mail.test", 587).model_copy(update={"email_from": "shop"}), None,  # type: ignore[arg-type]
              Channel.email)


def test_message_id_is_deterministic() -> None:
    assert message_id("k") == message_id("k") != message_id("k2")
    assert message_id("k").startswith("<") and message_id("k").endswith("@journeys>")


async def test_dev_sink_writes_one_eml_per_message_id(tmp_path: Path) -> None:
    sink, settings = await start_dev_sink(Settings(JOURNEYS_DATA_DIR=tmp_path, JOURNEYS_SMTP_HOST=None,
                                                      JOURNEYS_EMAIL_FROM=None))
    assert isinstance(sink, MailSink)
    try:
        assert settings.smtp_host == "127.0.0.1" and settings.smtp_port == sink.controller.port
        provider = SmtpProvider(settings)
        for key in ("a", "a", "b"):  # "a" twice: a re-delivery overwrites
            assert (await provider.deliver(outgoing(key=key))).status == "delivered"
    finally:
        sink.stop()
    files = sorted((tmp_path / "mail").iterdir())
    assert [f.name for f in files] == sorted(f"{message_id(k).strip('<>')}.eml" for k in ("a", "b"))
    email = message_from_bytes(files[0].read_bytes(), policy=default_policy)
    assert email["To"] == "ada@example.com" and email["From"] == "journeys@localhost"


async def test_dev_sink_stays_off_when_a_server_is_set(tmp_path: Path) -> None:
    settings = Settings(JOURNEYS_DATA_DIR=tmp_path, JOURNEYS_SMTP_HOST="mail.test")
    assert await start_dev_sink(settings) == (None, settings)
    assert not (tmp_path / "mail").exists()


async def test_dev_worker_sends_a_journeys_email_into_the_mail_folder(tmp_path: Path) -> None:
    """`python worker.py --dev`: the sink is logged, and a journey's email lands in <data dir>/mail/."""
    data_dir, user = tmp_path / "data", "user-smtp-1"
    loaded = load_file(ROOT / "examples" / "engagement-after-action.yaml")
    assert loaded.journey is not None, loaded.problems
    worker = WorkerProcess(data_dir, free_port(), "smtp")
    try:
        client = await worker.ready()
        logged = [json.loads(line) for line in worker.err.read_text().splitlines() if line.startswith("{")]
        sink = next(entry for entry in logged if entry.get("event") == "mail sink started")
        assert sink["folder"] == str(data_dir / "mail") and sink["address"].startswith("127.0.0.1:")
        store = Store(f"sqlite:///{data_dir / 'journeys.db'}")
        store.update_profile(user, {"email": "ada@example.com"})
        event = Event(id="evt-smtp-1", name="Added To Cart", user_id=user, time=datetime.now(UTC),
                      properties={"product_name": "iPhone 14", "price": "$799",
                                  "product_url": "https://shop.example/iphone-14"})
        routed = await route_event(client, [loaded.journey], event, TASK_QUEUE)
        handle = client.get_workflow_handle(routed[0].workflow_id, result_type=JourneyState)
        assert (await asyncio.wait_for(handle.result(), 20)).status == "finished"
        email_row = next(row for row in store.outbox_list(user_id=user) if row.channel == "email")
        store.engine.dispose()
        assert (email_row.status, email_row.provider) == ("delivered", "smtp"), email_row
        assert email_row.provider_message_id == message_id(email_row.idempotency_key)
        files = list((data_dir / "mail").glob("*.eml"))
        assert [f.name for f in files] == [f"{message_id(email_row.idempotency_key).strip('<>')}.eml"]
        email = message_from_bytes(files[0].read_bytes(), policy=default_policy)
        assert (email["To"], email["Subject"]) == ("ada@example.com", "iPhone 14 for $799")
        assert await worker.stop(signal.SIGTERM) == 0, worker.output()
    finally:
        worker.kill()


@pytest.mark.parametrize("handler", [Recorder("451 4.3.0 <ada@example.com>: try again later"),
                                     RefuseRecipient("450 4.2.1 <ada@example.com>: mailbox busy")])
async def test_a_4xx_answer_quoting_the_address_stays_out_of_the_failure(handler: Recorder) -> None:
    for controller in server(handler):
        provider = SmtpProvider(settings_for(controller.hostname, controller.port))
        with pytest.raises(TransientError) as raised:
            await provider.deliver(outgoing())
        assert_words_kept_out(raised.value, "ada@example.com")


@pytest.mark.parametrize("control", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e",
                                     "\x00", "\x1b", "\x7f"])
async def test_a_subject_with_a_control_character_fails_once_and_says_which(
        recorder: tuple[Recorder, SmtpProvider], control: str) -> None:
    """Refused, not folded: the reason names the character, once ("not sent: not sent:" was)."""
    handler, provider = recorder
    outcome = await provider.deliver(outgoing(content={**CONTENT, "subject": f"Your cart{control} waits"}))
    assert outcome.status == "failed"
    assert outcome.reason == f"the subject holds a control character (U+{ord(control):04X})"
    assert handler.received == []


async def test_a_subject_with_newlines_and_tabs_is_one_line(recorder: tuple[Recorder, SmtpProvider]) -> None:
    handler, provider = recorder
    await provider.deliver(outgoing(content={**CONTENT, "subject": "\r\nYour\tcart\r\n  waits\n"}))
    assert handler.received[0][1]["Subject"] == "Your\tcart waits"


@pytest.mark.parametrize("host", ["mail.example.com", "10.0.0.5", "192.168.1.1", "::ffff:127.0.0.1x"])
def test_no_tls_with_a_password_is_refused_for_any_host_but_this_machine(host: str) -> None:
    with pytest.raises(UsageError, match="JOURNEYS_SMTP_TLS=none"):
        SmtpProvider(settings_for(host, 25, JOURNEYS_SMTP_USERNAME="shop", JOURNEYS_SMTP_PASSWORD="pw"))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST."])
def test_no_tls_with_a_password_is_allowed_to_loopback(host: str) -> None:
    SmtpProvider(settings_for(host, 25, JOURNEYS_SMTP_USERNAME="shop", JOURNEYS_SMTP_PASSWORD="pw"))
    SmtpProvider(settings_for("mail.example.com", 25))  # no password: nothing to hand over


async def test_a_certificate_that_does_not_verify_is_a_failed_send_naming_tls(tmp_path: Path) -> None:
    from tests.helpers.vendors import self_signed

    handler = Recorder()
    controller = LoopbackController(handler, ssl_context=self_signed(tmp_path))
    controller.start()
    try:
        provider = SmtpProvider(settings_for(controller.hostname, controller.port, JOURNEYS_SMTP_TLS="tls"))
        outcome = await provider.deliver(outgoing())
    finally:
        controller.stop()
    assert outcome.status == "failed" and "TLS certificate not trusted" in (outcome.reason or "")
    assert handler.received == []


@pytest.mark.parametrize("retries", [0, 2])
async def test_a_server_answering_too_late_gets_the_message_a_bounded_number_of_times(
        tmp_path: Path, retries: int) -> None:
    """The data left and no answer came, every time: JOURNEYS_SEND_UNKNOWN_RETRIES retries, then
    the message is ``unknown`` (it may have arrived); a later attempt sends nothing."""
    from temporalio.testing import ActivityEnvironment

    from activities.delivery import Delivery
    from activities.models import SendMessageInput

    handler = Recorder(delay=3.0, slow=10)
    store = Store(f"sqlite:///{tmp_path / 'journeys.db'}")
    store.update_profile("ada", {"email": "ada@example.com"})
    message = SendMessageInput(idempotency_key="journey/cart/ada:e1:email", journey_id="cart",
                               workflow_id="journey/cart/ada", user_id="ada", node_id="email",
                               channel=Channel.email, message={"subject": "Hi", "text": "Your cart"})
    for controller in server(handler):
        provider = SmtpProvider(settings_for(controller.hostname, controller.port, JOURNEYS_SEND_TIMEOUT=0.5))
        sender = Delivery(store, {Channel.email: provider}, 0.5, unknown_retries=retries)
        failures = 0
        while (result := await _attempt(ActivityEnvironment(), sender, message)) is None:
            failures += 1
            assert failures <= retries
        assert result.status == "unknown" and failures == retries
        assert len(handler.received) == retries + 1
        again = await ActivityEnvironment().run(sender.send_message, message)
        assert again.duplicate and len(handler.received) == retries + 1


async def _attempt(env: Any, sender: Any, message: Any) -> Any:
    try:
        return await env.run(sender.send_message, message)
    except TransientError:
        return None


async def test_an_address_refused_for_good_is_not_tried_again(tmp_path: Path) -> None:
    """A 5xx to RCPT is remembered (by digest, per channel): the next message to the address is
    unreachable at once, without a connection; another address is still sent to."""
    class RefuseAda(Recorder):
        async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                              rcpt_options: list[str]) -> str:
            if address == "ada@example.com" and not self.received:
                return "550 5.1.1 No such user here"  # (asked again, it would take it)
            envelope.rcpt_tos.append(address)
            return "250 OK"

    store = Store(f"sqlite:///{tmp_path / 'journeys.db'}")
    handler = RefuseAda()
    for controller in server(handler):
        provider = SmtpProvider(settings_for(controller.hostname, controller.port), Bounces(store))
        assert (await provider.deliver(outgoing())).status == "failed"
        again = await provider.deliver(outgoing(key="journey/cart/ada:entry-2:email-product"))
        assert (again.status, again.reason) == (
            "unreachable", "the address bounced before (SMTP recipient refused: 550 5.1.1)")
        other = await provider.deliver(outgoing(key="journey/cart/bo:e1:email", email="bo@example.com"))
        assert other.status == "delivered", other.reason
    assert [env.rcpt_tos for env, _ in handler.received] == [["bo@example.com"]]
    assert Bounces(store).known("email", "ADA@example.com ") is not None  # as the address, any case
    store.engine.dispose()
