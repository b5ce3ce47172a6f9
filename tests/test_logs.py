"""The logs of a real run hold ids, never secrets, message content or profile values.

A real ``worker.py --dev --serve`` process with every secret setting set to a recognisable
value sends one user's journey through loopback vendors (FCM, Twilio, a webhook receiver, the
dev mail sink), fed through the HTTP API with the write key; then every line it wrote is read.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import re
import select
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from journeys.settings import Settings
from telemetry.logs import IDS, _temporal_ids, configure_logging, exit_kind, journey_of
from tests.helpers.processes import WorkerProcess
from tests.helpers.support import free_port
from tests.helpers.vendors import FakeFCM, FakeTwilio, WebhookReceiver, service_account, serving
from workflows.models import JourneyState

USER = "log-user"
SECRETS = {
    "JOURNEYS_SMTP_USERNAME": "sekret-smtp-user-4411",
    "JOURNEYS_SMTP_PASSWORD": "sekret-smtp-pw-4412",
    "JOURNEYS_TWILIO_ACCOUNT_SID": "ACsekret4413",
    "JOURNEYS_TWILIO_AUTH_TOKEN": "sekret-twilio-token-4414",
    "JOURNEYS_WEBHOOK_SECRET": "sekret-webhook-4415",
    "JOURNEYS_WRITE_KEY": "sekret-write-key-4416",
    # A P-256 key (base64url DER): web push is configured, so the worker holds it.
    "JOURNEYS_VAPID_PRIVATE_KEY": base64.urlsafe_b64encode(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())).decode().rstrip("="),
}
PROFILE = {"first_name": "Zebulonx", "email": "zeb-7781@example.test", "phone": "+14155550199",
           "push_tokens": ["tok-7781-push"]}
#: What must not show: the profile's values, the event's and what the messages say.
CONTENT = ["Zebulonx", "zeb-7781", "14155550199", "tok-7781-push", "COUPON-7781", "Welcome aboard"]

JOURNEY = """
id: log-test
name: Log test
entry: signed-up
nodes:
  - id: signed-up
    type: action
    event: Signed Up
    next: push-hello
  - id: push-hello
    type: engagement
    channel: push
    message: {title: "Welcome aboard, {{ profile.first_name }}", body: "{{ event.coupon }}"}
    next: sms-hello
  - id: sms-hello
    type: engagement
    channel: sms
    message: {text: "Welcome aboard {{ profile.first_name }}: {{ event.coupon }}"}
    next: mail-hello
  - id: mail-hello
    type: engagement
    channel: email
    message: {subject: "Welcome aboard, {{ profile.first_name }}", text: "{{ event.coupon }}"}
    next: hook
  - id: hook
    type: engagement
    channel: webhook
    message:
      url: "HOOK/in?who={{ profile.first_name }}"
      body: '{"coupon": "{{ event.coupon }}", "email": "{{ profile.email }}"}'
    next: remember
  - id: remember
    type: profile_update
    set: {last_coupon: "{{ event.coupon }}"}
    next: branch
  - id: branch
    type: split
    branches:
      - {when: "profile.first_name + 1", next: done}
    otherwise: done
  - id: done
    type: exit
"""


def _post(url: str, key: str, body: dict[str, Any]) -> int:
    auth = base64.b64encode(f"{key}:".encode()).decode()
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(answer.status)


async def test_a_run_logs_ids_and_no_secret_content_or_profile_value(tmp_path: Path) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    with serving(FakeTwilio(SECRETS["JOURNEYS_TWILIO_ACCOUNT_SID"], SECRETS["JOURNEYS_TWILIO_AUTH_TOKEN"])) \
            as twilio, serving(WebhookReceiver(SECRETS["JOURNEYS_WEBHOOK_SECRET"])) as hook, \
            serving(FakeFCM("journeys-test", "push@journeys-test.iam.gserviceaccount.com", "")) as fcm:
        credentials, fcm.public_key_pem = service_account(tmp_path, fcm.token_uri)
        private_key = json.loads(credentials.read_text())["private_key"]
        (journeys / "log-test.yaml").write_text(JOURNEY.replace("HOOK", hook.url))
        api = f"http://127.0.0.1:{free_port()}"
        worker = WorkerProcess(tmp_path / "data", free_port(), "logs", overrides={
            **SECRETS, "JOURNEYS_DIR": str(journeys), "JOURNEYS_TWILIO_FROM": "+15550001111",
            "JOURNEYS_TWILIO_URL": twilio.url, "JOURNEYS_FCM_CREDENTIALS": str(credentials),
            "JOURNEYS_FCM_URL": fcm.url, "JOURNEYS_VAPID_SUBJECT": "mailto:ops@example.test"},
            args=("--serve", api.removeprefix("http://")))
        try:
            client = await worker.ready(timeout=30)
            key = SECRETS["JOURNEYS_WRITE_KEY"]
            assert await asyncio.to_thread(_post, f"{api}/v1/identify", key,
                                           {"userId": USER, "traits": PROFILE}) == 200
            assert await asyncio.to_thread(_post, f"{api}/v1/track", key, {
                "userId": USER, "event": "Signed Up", "messageId": "evt-log-1",
                "properties": {"coupon": "COUPON-7781-zq"}}) == 200
            handle = client.get_workflow_handle(f"journey/log-test/{USER}", result_type=JourneyState)
            state = await asyncio.wait_for(handle.result(), 30)
            assert [m.status for m in state.messages] == ["delivered"] * 4, state.messages
            assert (len(fcm.sends()), len(twilio.received), len(hook.received)) == (1, 1, 1)
            assert "COUPON-7781-zq" in twilio.received[0].form()["Body"]  # it went out, and said so
            assert await worker.stop(signal.SIGTERM) == 0, worker.output()
        finally:
            worker.kill()
    output = worker.output()
    access_tokens = list(fcm.tokens_issued)
    basic = base64.b64encode(f"{SECRETS['JOURNEYS_WRITE_KEY']}:".encode()).decode()
    pem_lines = [line for line in private_key.splitlines() if "-----" not in line]
    secret_parts = [*SECRETS.values(), basic, *pem_lines[:3], *access_tokens]
    assert access_tokens
    for secret in secret_parts:
        assert secret not in output, f"a secret in the logs: {secret[:12]}..."
    for value in CONTENT:
        assert value not in output, f"content or a profile value in the logs: {value}\n{output}"

    lines = [json.loads(line) for line in worker.err.read_text().splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert events.count("message delivered") == 4, events
    for expected in ("journey entered", "split branch is false: its condition failed", "journey exited"):
        assert expected in events, events
    journey_lines = [line for line in lines if any(k in line for k in (*IDS, "activity_type"))]
    assert len(journey_lines) >= 7
    for line in journey_lines:
        assert all(line.get(k) for k in IDS), f"a line of the journey without its ids: {line}"
        assert line["journey_id"] == "log-test" and line["user_id"] == USER
        assert line["workflow_id"] == f"journey/log-test/{USER}"
    delivered = [line for line in lines if line["event"] == "message delivered"]
    assert [line["node_id"] for line in delivered] == ["push-hello", "sms-hello", "mail-hello", "hook"]
    assert [line["provider"] for line in delivered] == ["fcm", "twilio", "smtp", "webhook"]
    exited = lines[events.index("journey exited")]
    assert (exited["kind"], exited["node_id"]) == ("completed", "done")


def test_sdk_context_becomes_id_fields_and_exit_kinds() -> None:
    """The SDK's ``temporal_workflow`` / ``temporal_activity`` extras become our id fields."""
    event = _temporal_ids(None, "info", {"event": "x", "temporal_activity": {
        "workflow_id": "journey/cart/ada", "workflow_run_id": "r1", "activity_type": "send_message",
        "attempt": 2, "namespace": "default"}})
    assert event == {"event": "x", "workflow_id": "journey/cart/ada", "run_id": "r1",
                     "activity_type": "send_message", "attempt": 2, "journey_id": "cart"}
    assert journey_of("journey-cart-ada") is None
    assert [exit_kind(r) for r in (None, "exit event 'Charged'", "exited by an operator: spam",
                                   "journey timeout (7d)", "did 'Charged' within 1h")] == [
        "completed", "exit_event", "operator", "timeout", "rule"]


@contextmanager
def logged(tmp_path: Path) -> Iterator[list[dict[str, Any]]]:
    """The JSON lines the real logging set-up writes inside the block (filled when it ends)."""
    handlers, path = list(logging.getLogger().handlers), tmp_path / "log.jsonl"
    lines: list[dict[str, Any]] = []
    with path.open("w") as stream:
        configure_logging(stream=stream)
        try:
            yield lines
        finally:
            structlog.reset_defaults()
            logging.getLogger().handlers[:] = handlers
    lines.extend(json.loads(line) for line in path.read_text().splitlines())


def test_quiet_libraries_and_sdk_messages_without_their_context(tmp_path: Path) -> None:
    """httpx's request lines (a webhook's url, a subscription's endpoint) stay below INFO."""
    with logged(tmp_path) as lines:
        logging.getLogger("httpx").info("HTTP Request: POST https://hooks.test/?email=a@b.c")
        with structlog.contextvars.bound_contextvars(journey_id="cart", user_id="ada"):
            logging.getLogger("temporalio.activity").warning("retrying")
    assert [(line["event"], line.get("journey_id"), line.get("user_id")) for line in lines] == [
        ("retrying", "cart", "ada")]


def test_a_route_that_failed_is_a_warning_with_its_ids(tmp_path: Path) -> None:
    """The router's lines (stdlib, silent in a CLI) carry journey, user and workflow ids."""
    from ingestion.router import _logged
    from journeys.events import Routed

    with logged(tmp_path) as lines:
        _logged([Routed(journey_id="cart", workflow_id="journey/cart/ada", action="started"),
                 Routed(journey_id="cart", workflow_id="journey/cart/ada", action="failed",
                        error="boom")], "ada", "Added To Cart")
    assert [(line["event"], line["level"], line["journey_id"], line["user_id"], line["workflow_id"])
            for line in lines] == [("event not routed", "warning", "cart", "ada", "journey/cart/ada")]


@contextmanager
def on_a_terminal(format: str) -> Iterator[list[str]]:
    """The lines the real logging set-up writes to a terminal (a pseudo-terminal) in the block."""
    handlers = list(logging.getLogger().handlers)
    master, slave = os.openpty()
    lines: list[str] = []
    with os.fdopen(slave, "w") as tty:
        configure_logging(stream=tty, format=format)
        try:
            yield lines
        finally:
            tty.flush()
            structlog.reset_defaults()
            logging.getLogger().handlers[:] = handlers
    text = b""
    while select.select([master], [], [], 0.2)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        text += chunk
    os.close(master)
    lines.extend(re.sub(r"\x1b\[[0-9;]*m", "", line) for line in text.decode().splitlines() if line)


@pytest.mark.parametrize("format, readable", [("auto", True), ("console", True), ("json", False)])
def test_a_terminal_gets_readable_lines_unless_json_is_asked(format: str, readable: bool) -> None:
    with on_a_terminal(format) as lines:
        structlog.get_logger("worker").info("worker started", task_queue="journeys")
        logging.getLogger("journeys.http").warning("event not routed", extra={"journey_id": "cart"})
    assert len(lines) == 2, lines
    if readable:
        assert all(not line.startswith("{") for line in lines), lines
        assert "worker started" in lines[0] and "task_queue=journeys" in lines[0]
        assert "event not routed" in lines[1] and "journey_id=cart" in lines[1]
    else:
        first, second = (json.loads(line) for line in lines)
        assert (first["event"], first["task_queue"]) == ("worker started", "journeys")
        assert (second["event"], second["journey_id"]) == ("event not routed", "cart")


def test_a_file_gets_json_lines_and_the_setting_is_checked(tmp_path: Path) -> None:
    with logged(tmp_path) as lines:  # not a terminal: JSON, as a log collector reads it
        structlog.get_logger("worker").info("worker started")
    assert [line["event"] for line in lines] == ["worker started"]
    with pytest.raises(ValidationError, match="JOURNEYS_LOG_FORMAT"):
        Settings(JOURNEYS_LOG_FORMAT="xml")


class SlowStream(io.StringIO):
    """A stream whose every write gives the other threads their turn (a busy pipe or disk)."""

    def write(self, text: str) -> int:
        time.sleep(0.0001)
        return super().write(text)


def test_lines_of_many_threads_never_run_into_each_other() -> None:
    """structlog's and the stdlib's lines, from many threads at once (a worker's activities):
    each one whole on its own line, even when a write lets the other threads in."""
    def write(n: int) -> None:
        for i in range(100):
            structlog.get_logger("delivery").info("message kept", writer=n, i=i)
            logging.getLogger("temporalio.activity").warning("retrying", extra={"writer": n})

    handlers, stream = list(logging.getLogger().handlers), SlowStream()
    configure_logging(stream=stream)
    try:
        threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers[:] = handlers
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 4 * 100 * 2
