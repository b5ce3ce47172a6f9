"""One-click unsubscribe, end to end with real parts: a worker on the time-skipping server sends
through the SMTP provider to an aiosmtpd server on loopback; the API (``serve``'s app, on
uvicorn) answers the link. A marketing email carries List-Unsubscribe and its footer link, a
GET changes nothing, a one-click POST unsubscribes, and the next marketing email is not sent
while a transactional one is; forged and altered tokens change nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment

from activities.providers import OutgoingMessage
from activities.providers.mailsink import LoopbackController
from activities.providers.smtp import build_email
from ingestion.subscriptions_api import RateLimit
from journeys.language.models import Channel, Journey
from journeys.links import Links, links_of
from journeys.settings import Settings
from journeys.store import engagements, subscriptions
from journeys.store.database import Store
from tests.helpers.mailed import mail_worker, public_api, smtp_sink
from tests.helpers.support import Harness
from tests.test_smtp import Recorder

QUEUE = "unsubscribe"
NEWS = Journey.model_validate({
    "id": "news", "name": "News", "entry": "signed-up", "reentry": "after_exit",
    "nodes": [
        {"id": "signed-up", "type": "action", "event": "Signed Up", "next": "email-news"},
        {"id": "email-news", "type": "engagement", "channel": "email",
         "message": {"subject": "Our news", "text": "Hello. Unsubscribe: {{ unsubscribe_url }}",
                     "html": "<p>Hello</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>"},
         "next": None}]})
RECEIPT = Journey.model_validate({
    "id": "receipt", "name": "Receipt", "entry": "ordered", "category": "transactional",
    "reentry": "after_exit",
    "nodes": [
        {"id": "ordered", "type": "action", "event": "Ordered", "next": "email-receipt"},
        {"id": "email-receipt", "type": "engagement", "channel": "email",
         "message": {"subject": "Your receipt", "text": "Thank you"}, "next": None}]})


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Recorder, LoopbackController]]:
    with smtp_sink() as sink:
        yield sink


@pytest.fixture(scope="module")
def api(env: WorkflowEnvironment, data_dir: Path) -> Iterator[str]:
    """``serve``'s app: its links read with the store's own secret, as the worker's are made."""
    with public_api(env, data_dir, QUEUE, data_dir) as url:
        yield url


@pytest.fixture(scope="module")
async def journeys(env: WorkflowEnvironment, store: Store, api: str,
                   smtp: tuple[Recorder, LoopbackController]) -> AsyncIterator[Harness]:
    async with mail_worker(env, store, QUEUE, smtp[1], api):
        yield Harness(env, store, [NEWS, RECEIPT], QUEUE)


async def test_one_click_unsubscribes_from_marketing_email_and_not_from_receipts(
        journeys: Harness, api: str, smtp: tuple[Recorder, LoopbackController]) -> None:
    handler, _ = smtp
    journeys.store.update_profile("ada", {"email": "ada@example.com"})
    await journeys.send("ada", "Signed Up")
    await journeys.result("news", "ada")
    _, news = handler.received[-1]
    header = news["List-Unsubscribe"]
    assert header.startswith(f"<{api}/u/") and header.endswith(">")
    assert news["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = header[1:-1]
    assert "ada" not in link  # opaque: nothing of the user can be read in it
    # The footer's link (made when the message was rendered) is bound to the same.
    body = news.get_body(("html",))
    assert body is not None
    html = body.get_content()
    footer = html.split('href="', 1)[1].split('"', 1)[0]
    links = links_of(journeys.store, api)
    bound = links.read_unsubscribe(link.rsplit("/", 1)[1])
    assert footer.startswith(f"{api}/u/") and links.read_unsubscribe(footer.rsplit("/", 1)[1]) == bound
    assert bound is not None and (bound.user_id, bound.channel, bound.topic, bound.journey_id,
                                  bound.node_id) == ("ada", "email", "", "news", "email-news")
    # A receipt carries no unsubscribe header.
    await journeys.send("ada", "Ordered")
    await journeys.result("receipt", "ada")
    _, receipt = handler.received[-1]
    assert receipt["Subject"] == "Your receipt" and receipt["List-Unsubscribe"] is None

    async with httpx.AsyncClient(timeout=10) as http:
        page = await http.get(link)  # what a mail scanner or a click does: nothing changes
        assert page.status_code == 200 and "<form method=\"post\">" in page.text
        assert "ada" not in page.text
        assert subscriptions.unsubscribed(journeys.store, "ada", "email") is None
        # Forged and altered tokens: 404, the same page, nothing changed.
        token = link.rsplit("/", 1)[1]
        altered = token[:40] + ("A" if token[40] != "A" else "B") + token[41:]
        forged = Links(b"another secret", api).unsubscribe_url("ada", "email").rsplit("/", 1)[1]
        answers = [await http.post(f"{api}/u/{t}", content=b"List-Unsubscribe=One-Click")
                   for t in (altered, forged, "nonsense", "x" * 5000)]
        assert {(a.status_code, a.text) for a in answers} == {(404, answers[0].text)}
        assert subscriptions.changes(journeys.store, "ada") == []
        # RFC 8058's one-click POST, as a mailbox provider sends it.
        done = await http.post(link, content=b"List-Unsubscribe=One-Click",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert done.status_code == 200 and "unsubscribed" in done.text
    assert subscriptions.unsubscribed(journeys.store, "ada", "email") == "unsubscribed from email"
    [change] = subscriptions.changes(journeys.store, "ada")
    assert (change.how, change.source, change.subscribed) == ("link", "one-click", False)
    assert engagements.counts(journeys.store, "news") == {"email-news": {"unsubscribed": 1}}

    # The next marketing email is not sent; a receipt still is.
    sent = len(handler.received)
    await journeys.send("ada", "Signed Up")
    again = await journeys.result("news", "ada")
    assert [(m.status, m.reason) for m in again.messages] == [
        ("unsubscribed", "not sent: unsubscribed from email")]
    await journeys.send("ada", "Ordered")
    receipt_again = await journeys.result("receipt", "ada")
    assert [m.status for m in receipt_again.messages] == ["delivered"]
    assert [m["Subject"] for _, m in handler.received[sent:]] == ["Your receipt"]


async def test_the_page_button_unsubscribes_from_a_topic(journeys: Harness, api: str) -> None:
    link = links_of(journeys.store, api).unsubscribe_url("bo", "email", "newsletter")
    async with httpx.AsyncClient(timeout=10) as http:
        assert "Unsubscribe from email messages on newsletter?" in (await http.get(link)).text
        done = await http.post(link, data={"confirm": "yes"})
    assert done.status_code == 200
    assert subscriptions.unsubscribed(journeys.store, "bo", "email", "newsletter") is not None
    assert subscriptions.unsubscribed(journeys.store, "bo", "email") is None
    assert [c.source for c in subscriptions.changes(journeys.store, "bo")] == ["page"]


async def test_a_large_body_is_refused_and_one_address_is_rate_limited(
        journeys: Harness, api: str) -> None:
    link = links_of(journeys.store, api).unsubscribe_url("cy", "email")
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.post(link, content=b"x" * 5000)).status_code == 413
        answers = [(await http.get(f"{api}/u/nothing")).status_code for _ in range(40)]
    assert subscriptions.changes(journeys.store, "cy") == []
    assert 404 in answers and answers[-1] == 429


def test_the_rate_limit_forgets_after_a_minute() -> None:
    limit = RateLimit(2, remembered=2)
    assert [limit.allows("a", now=t) for t in (0, 1, 2)] == [True, True, False]
    assert limit.allows("a", now=61)  # the first two are over a minute old
    limit.allows("b", now=62)
    limit.allows("c", now=63)  # three addresses, two remembered: "a" is forgotten
    assert limit.allows("a", now=64) and limit.allows("a", now=64)


def test_the_settings_of_links_are_checked_at_start() -> None:
    assert Settings(JOURNEYS_PUBLIC_URL="https://journeys.shop.example/").public_url == (
        "https://journeys.shop.example")
    for name, value, says in (("JOURNEYS_PUBLIC_URL", "ftp://shop.example", "not an http(s) address"),
                              ("JOURNEYS_PUBLIC_URL", "https://shop.example/?a=1", "without a query"),
                              ("JOURNEYS_UNSUBSCRIBE_MAILTO", "un subscribe@shop", "not an email address")):
        with pytest.raises(ValidationError, match=re.escape(says)):
            Settings.model_validate({name: value})


def test_the_mailto_rides_beside_the_link_with_the_token_in_its_subject() -> None:
    link = Links(b"k", "https://journeys.shop.example").unsubscribe_url("ada", "email")
    message = OutgoingMessage(idempotency_key="k", journey_id="j", node_id="n", user_id="ada",
                              channel=Channel.email, content={"subject": "s", "text": "t"},
                              unsubscribe_url=link)
    email = build_email(message, "shop@shop.example", "ada@example.com", "unsubscribe@shop.example")
    token = link.rsplit("/", 1)[1]
    assert email["List-Unsubscribe"] == (
        f"<{link}>, <mailto:unsubscribe@shop.example?subject=unsubscribe%20{token}>")
