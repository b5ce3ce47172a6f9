"""Personalization, continued: webhook bodies, headers and links, and which failures count as
a template's own (tests/test_personalize.py has rendering, the sandbox and the analysis)."""


from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import CancelledError
from temporalio.testing import ActivityEnvironment

from activities.delivery import Delivery
from activities.models import SendMessageInput
from journeys.language.messages import MessageValue
from journeys.language.models import Channel
from journeys.personalization.personalize import (
    MessageRefused,
    TemplateError,
    evaluate,
    render,
    render_message,
)
from journeys.store.database import OutboxRow, Store

# --- webhooks, headers and links ---------------------------------------------------------------------

HOOK = "https://hooks.test/cart"


def test_a_json_body_escapes_values() -> None:
    message: dict[str, MessageValue] = {"url": HOOK, "body": '{"name": "{{ event.name }}"}'}
    for name in ['x", "admin": true', 'a\\"b', "line\nbreak", '"}']:
        body = render_message(Channel.webhook, message, {}, {"name": name})["body"]
        assert json.loads(body) == {"name": name}


def test_tojson_writes_json_once() -> None:
    message: dict[str, MessageValue] = {
        "url": HOOK, "headers": {"Content-Type": "application/json; charset=utf-8"},
        "body": '{"name": {{ event.name | tojson }}, "items": {{ event.items | tojson }}, '
                '"n": {{ event.n }}}'}
    event = {"name": 'x"<', "items": [1, None, "a"], "n": 3}
    body = render_message(Channel.webhook, message, {}, event)["body"]
    assert json.loads(body) == {"name": 'x"<', "items": [1, None, "a"], "n": 3}


def test_a_body_that_is_not_json_is_refused() -> None:
    message: dict[str, MessageValue] = {"url": HOOK, "body": '{"n": {{ event.n }}}'}
    with pytest.raises(MessageRefused, match=r"^body: not JSON"):
        render_message(Channel.webhook, message, {}, {"n": '1, "admin": true'})


def test_another_content_type_renders_the_body_as_it_is() -> None:
    message: dict[str, MessageValue] = {"url": HOOK, "headers": {"content-type": "text/plain"},
                                        "body": 'name="{{ event.name }}"'}
    assert render_message(Channel.webhook, message, {}, {"name": 'a"b'})["body"] == 'name="a"b"'


@pytest.mark.parametrize("message, field", [
    ({"url": HOOK, "headers": {"X-User": "{{ event.v }}"}}, "headers.X-User"),
    ({"url": HOOK + "?q={{ event.v }}"}, "url"),
    ({"url": HOOK, "method": "POST{{ event.v }}"}, "method"),
])
@pytest.mark.parametrize("value", ["a\r\nX-Admin: 1", "a\nX-Admin: 1", "a\rb", "a\x0bb", "a\x85b",
                                   "a\u2028b", "a\x00b"])
def test_a_line_break_in_a_header_is_refused(message: dict[str, MessageValue], field: str,
                                             value: str) -> None:
    with pytest.raises(MessageRefused) as caught:
        render_message(Channel.webhook, message, {}, {"v": value})
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x", "ftp://x/y"])
def test_a_webhook_url_is_http(url: str) -> None:
    with pytest.raises(MessageRefused, match=r"^url: "):
        render_message(Channel.webhook, {"url": "{{ event.u }}"}, {}, {"u": url})


@pytest.mark.parametrize("html, url", [
    ('<a href="{{ event.u }}">x</a>', "javascript:alert(1)"),
    ('<a href="{{ event.u }}">x</a>', " JaVa\tScRiPt:alert(1)"),
    ("<img src='{{ event.u }}'>", "data:text/html;base64,PHNjcmlwdD4="),
    ('<a href="{{ event.u | safe }}">x</a>', "javascript&colon;alert(1)"),
    ('<a href="{{ event.u }}">x</a>', "vbscript:x"),
    ('<form action="{{ event.u }}"></form>', "javascript:x"),
])
def test_email_links_are_web_or_mail_links(html: str, url: str) -> None:
    with pytest.raises(MessageRefused, match=r"^html: .* URL"):
        render_message(Channel.email, {"subject": "s", "html": html}, {}, {"u": url})


@pytest.mark.parametrize("url", ["https://shop.test/p?a=1&b=2", "http://x", "mailto:ada@x.test",
                                 "/relative", "#top", "javascript&colon;x"])
def test_web_and_mail_links_are_sent(url: str) -> None:
    message: dict[str, MessageValue] = {"subject": "s", "html": '<a href="{{ event.u }}">x</a>'}
    render_message(Channel.email, message, {}, {"u": url})


@pytest.mark.parametrize("text, repeat", [("x", 1601), ("é", 801), ("€", 600)])
def test_a_message_over_the_channel_limit_is_refused(text: str, repeat: int) -> None:
    with pytest.raises(MessageRefused, match="1,600"):
        render_message(Channel.sms, {"text": "{{ event.v }}"}, {}, {"v": text * repeat})


def test_the_limit_counts_every_field() -> None:
    message: dict[str, MessageValue] = {"title": "{{ event.v }}", "body": "{{ event.v }}"}
    render_message(Channel.push, message, {}, {"v": "x" * 2000})
    with pytest.raises(MessageRefused) as caught:
        render_message(Channel.push, message, {}, {"v": "x" * 2100})
    assert "push limit" in str(caught.value)


# --- only a template's own failure is a template error ----------------------------------------------

class Exploding(str):
    """A profile text whose printing or comparing raises ``exc``, as a cancellation would."""

    exc: BaseException

    def __new__(cls, exc: BaseException) -> Exploding:
        value = super().__new__(cls, "boom")
        value.exc = exc
        return value

    def __str__(self) -> str:
        raise self.exc

    def __eq__(self, other: object) -> bool:
        raise self.exc

    __hash__ = str.__hash__


@pytest.mark.parametrize("exc", [CancelledError("cancelled"), KeyboardInterrupt(), MemoryError(),
                                 RuntimeError("worker shutting down")])
def test_other_exceptions_propagate(exc: BaseException) -> None:
    profile = {"name": Exploding(exc)}
    with pytest.raises(type(exc)):
        render("Hi {{ profile.name }}", profile, None)
    with pytest.raises(type(exc)):
        render_message(Channel.push, {"body": "Hi {{ profile.name }}"}, profile, None)
    with pytest.raises(type(exc)):
        evaluate("profile.name == 'x'", profile, None)


@pytest.mark.parametrize("exc", [TypeError("bad"), ValueError("bad"), LookupError("bad")])
def test_data_errors_are_template_errors(exc: Exception) -> None:
    with pytest.raises(TemplateError, match=type(exc).__name__):
        render("Hi {{ profile.name }}", {"name": Exploding(exc)}, None)
    with pytest.raises(TemplateError):
        evaluate("profile.name == 'x'", {"name": Exploding(exc)}, None)


class _ExplodingStore(Store):
    """A profile whose value raises CancelledError when the template reads it (a shutdown)."""

    def send_context(self, idempotency_key: str, user_id: str, kept: tuple[str, str] | None = None
                     ) -> tuple[OutboxRow | None, dict[str, Any], dict[str, Any] | None]:
        known, _, properties = super().send_context(idempotency_key, user_id, kept)
        return known, {"name": Exploding(CancelledError("worker shutting down"))}, properties


async def test_a_cancelled_send_is_not_recorded_skipped(tmp_path: Path) -> None:
    store = _ExplodingStore(f"sqlite:///{tmp_path / 'journeys.db'}")
    delivery = Delivery(store)
    send = SendMessageInput(idempotency_key="k1", journey_id="j", workflow_id="w", user_id="u",
                            node_id="push", channel=Channel.push,
                            message={"body": "Hi {{ profile.name }}"})
    with pytest.raises(CancelledError):
        await ActivityEnvironment().run(delivery.send_message, send)
    assert store.outbox_get("k1") is None  # a retry renders again
    assert store.outbox_list() == []
