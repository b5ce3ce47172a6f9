"""Opens and clicks, end to end with real parts: a worker on the time-skipping server sends an
email through the SMTP provider to an aiosmtpd server on loopback; following its link through
``serve``'s app redirects to the product page, the journey takes its ``clicked`` path, and
``stats`` counts it. An open takes the ``opened`` path; neither, ``otherwise`` after the wait.
An altered link is refused and redirects nowhere."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.providers.mailsink import LoopbackController
from ingestion import engagement_api
from journeys.funnel.graph import to_mermaid
from journeys.funnel.report import render_report
from journeys.funnel.stats import format_stats, journey_stats
from journeys.language.models import Journey
from journeys.links import Message, links_of
from journeys.store import engagements
from journeys.store.database import Store
from tests.helpers.mailed import mail_worker, public_api, smtp_sink
from tests.helpers.support import Harness, eventually, run_cli
from tests.test_smtp import Recorder
from workflows.journey import JourneyWorkflow

QUEUE = "engagement"
PRODUCT = "https://shop.example/p/iphone-14?ref=mail&x=1"
PROMO = Journey.model_validate({
    "id": "promo", "name": "Promo", "entry": "viewed",
    "nodes": [
        {"id": "viewed", "type": "action", "event": "Viewed Product", "next": "email-offer"},
        {"id": "email-offer", "type": "engagement", "channel": "email",
         "message": {"subject": "{{ event.name }} for you",
                     "html": '<p>See <a href="{{ event.url }}">{{ event.name }}</a></p>',
                     "text": "{{ event.url }}"},
         "on_engagement": {"clicked": "push-thanks", "opened": "push-opened", "within": "2d",
                           "otherwise": "push-missed"}},
        {"id": "push-thanks", "type": "engagement", "channel": "push",
         "message": {"title": "Thanks", "body": "for looking"}},
        {"id": "push-opened", "type": "engagement", "channel": "push",
         "message": {"title": "Opened", "body": "but no click"}},
        {"id": "push-missed", "type": "engagement", "channel": "push",
         "message": {"title": "Missed", "body": "it"}},
    ]})


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Recorder, LoopbackController]]:
    with smtp_sink() as sink:
        yield sink


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("catalog")
    (folder / "promo.json").write_text(PROMO.model_dump_json())
    return folder


@pytest.fixture(scope="module")
def api(env: WorkflowEnvironment, data_dir: Path, catalog: Path) -> Iterator[str]:
    """``serve``'s app with the journey in its catalog: the engagement events route to it."""
    with public_api(env, data_dir, QUEUE, catalog) as url:
        yield url


@pytest.fixture(scope="module")
async def journeys(env: WorkflowEnvironment, store: Store, api: str,
                   smtp: tuple[Recorder, LoopbackController]) -> AsyncIterator[Harness]:
    async with mail_worker(env, store, QUEUE, smtp[1], api):
        yield Harness(env, store, [PROMO], QUEUE)


async def emailed(journeys: Harness, smtp: tuple[Recorder, LoopbackController], user: str) -> str:
    """The user views the product; the html of the email they got."""
    handler, _ = smtp
    journeys.store.update_profile(user, {"email": f"{user}@example.com"})
    await journeys.send(user, "Viewed Product", {"name": "iPhone 14", "url": PRODUCT})

    async def arrived() -> str | None:
        for _, email in handler.received:
            if email["To"] == f"{user}@example.com":
                body = email.get_body(("html",))
                return body.get_content() if body else None
        return None
    html = await eventually(arrived)
    assert html, f"no email to {user}"
    return html


async def waiting_at(journeys: Harness, user: str, node: str) -> None:
    """The journey moved past the email (a query: the time-skipping clock does not move)."""
    async def moved() -> bool:
        state = await journeys.handle("promo", user).query(JourneyWorkflow.status)
        return state.current_node == node or state.status != "running"
    assert await eventually(moved), f"{user} did not reach {node}"


async def test_a_click_redirects_to_the_product_takes_the_clicked_path_and_counts(
        journeys: Harness, smtp: tuple[Recorder, LoopbackController], api: str) -> None:
    html = await emailed(journeys, smtp, "ada")
    [link] = re.findall(r'<a href="([^"]+)"', html)
    assert link.startswith(f"{api}/c/") and "shop.example" not in link  # through us, opaque
    assert re.search(rf'<img src="{re.escape(api)}/o/[^"]+" width="1" height="1" alt="">', html)
    async with httpx.AsyncClient(timeout=10) as http:
        followed = await http.get(link)
        again = await http.get(link)  # a second click: counted once
    assert (followed.status_code, followed.headers["location"]) == (302, PRODUCT)
    assert again.headers["location"] == PRODUCT
    await waiting_at(journeys, "ada", "push-thanks")
    state = await journeys.result("promo", "ada")
    assert state.path == ["viewed", "email-offer", "push-thanks"]
    assert [(m.node_id, m.status) for m in state.messages] == [
        ("email-offer", "delivered"), ("push-thanks", "delivered")]
    counted = engagements.counts(journeys.store, "promo")
    assert counted == {"email-offer": {"clicked": 1}}
    await journeys.record_history("engagement-clicked", "promo", "ada")


async def test_an_open_takes_the_opened_path_and_a_machine_open_does_not(
        journeys: Harness, smtp: tuple[Recorder, LoopbackController], api: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    html = await emailed(journeys, smtp, "bob")
    [pixel] = re.findall(r'<img src="([^"]+)"', html)
    async with httpx.AsyncClient(timeout=10) as http:
        machine = await http.get(pixel)  # at once: a mail proxy fetching images
        assert machine.status_code == 200 and machine.headers["content-type"] == "image/gif"
        state = await journeys.handle("promo", "bob").query(JourneyWorkflow.status)
        assert state.current_node == "email-offer"  # a machine's open is no open of the user's
        assert engagements.counts(journeys.store, "promo")["email-offer"] == {
            "clicked": 1, "machine_opened": 1}  # (ada's click, above)
        # The same image, later (as if past the proxy's first seconds): the user opened it.
        monkeypatch.setattr(engagement_api, "MACHINE_OPEN_SECONDS", 0.0)
        assert (await http.get(pixel)).status_code == 200
    await waiting_at(journeys, "bob", "push-opened")
    state = await journeys.result("promo", "bob")
    assert state.path[-1] == "push-opened"
    assert engagements.counts(journeys.store, "promo")["email-offer"]["opened"] == 1


async def test_neither_takes_otherwise_after_the_wait(
        journeys: Harness, smtp: tuple[Recorder, LoopbackController]) -> None:
    await emailed(journeys, smtp, "cy")
    state = await journeys.result("promo", "cy")  # the time-skipping clock passes the 2 days
    assert state.path == ["viewed", "email-offer", "push-missed"]
    timers = await journeys.timers("promo", "cy")
    assert timers[-1].total_seconds() == 2 * 24 * 3600


async def test_another_message_s_click_does_not_count_for_this_one(
        journeys: Harness, smtp: tuple[Recorder, LoopbackController]) -> None:
    await emailed(journeys, smtp, "dee")
    await journeys.send("dee", "Message Clicked", {"message_id": "0" * 32})  # not this message's
    state = await journeys.result("promo", "dee")
    assert state.path[-1] == "push-missed"


async def test_an_altered_click_link_redirects_nowhere(journeys: Harness, api: str) -> None:
    links = links_of(journeys.store, api)
    bound = links.read("click", links.url("click", _bound()).rsplit("/", 1)[1])
    assert bound is not None and bound.url == "https://shop.example/"
    token = links.url("click", _bound()).rsplit("/", 1)[1]
    altered = token[:50] + ("A" if token[50] != "A" else "B") + token[51:]
    async with httpx.AsyncClient(timeout=10) as http:
        for wrong in (altered, links.url("open", _bound()).rsplit("/", 1)[1], "x"):
            answer = await http.get(f"{api}/c/{wrong}")
            assert answer.status_code == 404 and "location" not in answer.headers


def _bound() -> Message:
    return Message("eve", "email", message="1" * 32, journey_id="promo", node_id="email-offer",
                   url="https://shop.example/")


async def test_stats_graph_and_report_show_opens_clicks_and_unsubscribes(
        journeys: Harness, smtp: tuple[Recorder, LoopbackController], api: str) -> None:
    await emailed(journeys, smtp, "fay")  # she unsubscribes through the email's header link
    handler, _ = smtp
    [link] = [m["List-Unsubscribe"][1:-1] for _, m in handler.received if m["To"] == "fay@example.com"]
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.post(link, content=b"List-Unsubscribe=One-Click")).status_code == 200
    await journeys.result("promo", "fay")
    stats = journey_stats(journeys.store, PROMO)
    [node] = [n for n in stats.nodes if n.node_id == "email-offer"]
    # ada clicked, bob opened (after a proxy's fetch), fay unsubscribed; 5 delivered
    assert node.engagement == {"clicked": 1, "opened": 1, "unsubscribed": 1}
    shown = format_stats(stats)
    assert "opened 1 (20%), clicked 1 (20%), unsubscribed 1 (20%)" in shown, shown
    assert "clicked 1" in to_mermaid(PROMO, stats) and "unsubscribed 1" in to_mermaid(PROMO, stats)
    page = render_report(journeys.store, PROMO, stats)
    assert "<h2>Messages, opens and clicks</h2>" in page
    assert "<td>1 (20%)</td><td>1 (20%)</td><td>1 (20%)</td>" in page


def test_the_commands_show_them(env: WorkflowEnvironment, data_dir: Path, catalog: Path,
                                tmp_path: Path) -> None:
    """``stats``, ``graph --stats`` and ``report`` as a user runs them, on the module's store."""
    where = ["--journeys", str(catalog), "--no-waiting"]
    stats = run_cli(env, data_dir, QUEUE, "stats", "promo", *where)
    assert stats.returncode == 0, stats.stderr
    assert "delivered 5; opened 1 (20%), clicked 1 (20%), unsubscribed 1 (20%)" in stats.stdout
    graph = run_cli(env, data_dir, QUEUE, "graph", str(catalog / "promo.json"), "--stats", "--no-waiting")
    assert graph.returncode == 0 and "opened 1, clicked 1, unsubscribed 1" in graph.stdout, graph.stderr
    out = tmp_path / "promo.html"
    report = run_cli(env, data_dir, QUEUE, "report", "promo", "--out", str(out), *where)
    assert report.returncode == 0, report.stderr
    assert "<td>1 (20%)</td><td>1 (20%)</td><td>1 (20%)</td>" in out.read_text()
