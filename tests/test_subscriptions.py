"""Subscriptions: a marketing message to a user unsubscribed from its channel or topic is not
sent (``unsubscribed``: the outbox, its outcome path, ``stats``), a transactional one is; the
changes are audited. Through the router, a worker and the time-skipping server, and the
command line as a user runs it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from journeys.funnel.stats import format_stats, journey_stats
from journeys.language.models import Journey
from journeys.store import subscriptions
from journeys.store.database import Store
from tests.helpers.support import Harness, run_cli

QUEUE = "subscriptions"

NEWS = Journey.model_validate({
    "id": "news", "name": "Welcome news", "entry": "signed-up", "topic": "newsletter",
    "nodes": [
        {"id": "signed-up", "type": "action", "event": "Signed Up", "next": "push-deal"},
        {"id": "push-deal", "type": "engagement", "channel": "push", "topic": "promotions",
         "message": {"title": "A deal", "body": "10 % off today"}, "next": "email-news"},
        {"id": "email-news", "type": "engagement", "channel": "email",
         "message": {"subject": "Our news", "text": "Hello"},
         "on": {"unsubscribed": "push-instead"}, "next": None},
        {"id": "push-instead", "type": "engagement", "channel": "push",
         "message": {"title": "News", "body": "in the app"}, "next": None},
    ]})
RECEIPT = Journey.model_validate({
    "id": "receipt", "name": "Receipt", "entry": "ordered", "category": "transactional",
    "nodes": [
        {"id": "ordered", "type": "action", "event": "Ordered", "next": "email-receipt"},
        {"id": "email-receipt", "type": "engagement", "channel": "email",
         "message": {"subject": "Your receipt", "text": "Thank you"}, "next": None},
    ]})


@pytest.fixture(scope="module")
def journeys(env: WorkflowEnvironment, store: Store, worker: None) -> Harness:
    return Harness(env, store, [NEWS, RECEIPT], QUEUE)


def statuses(store: Store, user: str, journey_id: str) -> list[tuple[str, str]]:
    return [(r.node_id, r.status) for r in store.outbox_list(user_id=user, journey_id=journey_id)]


async def test_a_subscribed_user_gets_every_message(journeys: Harness) -> None:
    await journeys.send("ann", "Signed Up")
    state = await journeys.result("news", "ann")
    assert [(m.node_id, m.status) for m in state.messages] == [
        ("push-deal", "delivered"), ("email-news", "delivered")]


async def test_unsubscribed_from_a_channel_takes_the_unsubscribed_path(journeys: Harness) -> None:
    assert subscriptions.change(journeys.store, "bea", "email", subscribed=False, how="cli", source="test")
    await journeys.send("bea", "Signed Up")
    state = await journeys.result("news", "bea")
    assert [(m.node_id, m.status, m.reason) for m in state.messages] == [
        ("push-deal", "delivered", None),
        ("email-news", "unsubscribed", "not sent: unsubscribed from email"),
        ("push-instead", "delivered", None)]
    [email] = [r for r in journeys.outbox("bea") if r.node_id == "email-news"]
    assert (email.status, email.content) == ("unsubscribed", {})  # not even rendered
    await journeys.record_history("unsubscribed-path", "news", "bea")
    # A transactional message goes out all the same.
    await journeys.send("bea", "Ordered")
    receipt = await journeys.result("receipt", "bea")
    assert [(m.node_id, m.status) for m in receipt.messages] == [("email-receipt", "delivered")]


async def test_unsubscribed_from_a_topic_only_stops_that_topic(journeys: Harness) -> None:
    # push topic promotions (the node's own) and email topic newsletter (the journey's)
    subscriptions.change(journeys.store, "cy", "push", topic="promotions", subscribed=False, how="api")
    subscriptions.change(journeys.store, "cy", "email", topic="newsletter", subscribed=False, how="api")
    subscriptions.change(journeys.store, "cy", "email", topic="other", subscribed=False, how="api")
    await journeys.send("cy", "Signed Up")
    state = await journeys.result("news", "cy")
    assert [(m.node_id, m.status, m.reason) for m in state.messages] == [
        ("push-deal", "unsubscribed", "not sent: unsubscribed from push topic 'promotions'"),
        ("email-news", "unsubscribed", "not sent: unsubscribed from email topic 'newsletter'"),
        ("push-instead", "delivered", None)]  # push, no topic: subscribed


async def test_subscribed_again_gets_it_and_the_changes_are_audited(journeys: Harness) -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    assert subscriptions.change(journeys.store, "dee", "email", subscribed=False, how="link", at=at)
    assert not subscriptions.change(journeys.store, "dee", "email", subscribed=False, how="api")  # already
    assert subscriptions.change(journeys.store, "dee", "email", subscribed=True, how="api",
                                source="api 10.0.0.1")
    await journeys.send("dee", "Signed Up")
    state = await journeys.result("news", "dee")
    assert [m.status for m in state.messages] == ["delivered", "delivered"]
    audit = subscriptions.changes(journeys.store, "dee")
    assert [(c.subscribed, c.how, c.source) for c in audit] == [
        (False, "link", None), (True, "api", "api 10.0.0.1")]
    assert audit[0].at == at and audit[1].at > at
    assert [(s.channel, s.topic, s.subscribed) for s in subscriptions.of_user(journeys.store, "dee")] == [
        ("email", "", True)]


async def test_stats_count_the_unsubscribed(journeys: Harness) -> None:
    # The four users above: ann and dee got the email (kept: the outbox provider), bea and cy not.
    stats = journey_stats(journeys.store, NEWS)
    messages = {n.node_id: n.messages for n in stats.nodes if n.messages}
    assert messages == {"push-deal": {"kept": 3, "unsubscribed": 1},
                        "email-news": {"kept": 2, "unsubscribed": 2},
                        "push-instead": {"kept": 2}}
    assert "kept 2, unsubscribed 2" in format_stats(stats)


def test_the_command_line_changes_and_shows_them(env: WorkflowEnvironment, data_dir: Path) -> None:
    done = run_cli(env, data_dir, QUEUE, "subscription", "eve", "--channel", "sms", "--unsubscribe")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "user eve: unsubscribed from sms; subscribed to the rest"
    done = run_cli(env, data_dir, QUEUE, "subscription", "eve", "--topic", "newsletter", "--unsubscribe")
    assert done.returncode == 0, done.stderr  # every channel's newsletter
    shown = json.loads(run_cli(env, data_dir, QUEUE, "subscription", "eve", "--json").stdout)
    assert [(s["channel"], s["topic"], s["subscribed"]) for s in shown["subscriptions"]][:2] == [
        ("app_inbox", "newsletter", False), ("email", "newsletter", False)]
    assert {c["how"] for c in shown["changes"]} == {"cli"} and len(shown["changes"]) == 10
    done = run_cli(env, data_dir, QUEUE, "subscription", "eve", "--channel", "sms", "--subscribe")
    assert done.stdout.startswith("user eve: unsubscribed from app_inbox topic 'newsletter', ")
    assert "sms topic 'newsletter'" in done.stdout and "from sms," not in done.stdout
    last = done.stdout.splitlines()[-1]  # the audit, newest last
    assert last.split()[2:6] == ["subscribed", "sms", "by", "cli"]
    for wrong, says in ((["--channel", "fax"], "--channel: 'fax' is not a channel"),
                        (["--topic", "Big News"], "--topic: 'Big News' is not a topic name")):
        done = run_cli(env, data_dir, QUEUE, "subscription", "eve", *wrong, "--unsubscribe")
        assert done.returncode == 2 and says in done.stderr


async def test_status_ends_with_what_the_user_is_unsubscribed_from(
        journeys: Harness, data_dir: Path, tmp_path: Path) -> None:
    for journey in (NEWS, RECEIPT):
        (tmp_path / f"{journey.id}.json").write_text(journey.model_dump_json())
    await journeys.result("news", "bea")
    done = await asyncio.to_thread(run_cli, journeys.env, data_dir, QUEUE, "status", "bea",
                                   "--journeys", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "news" in done.stdout
    assert done.stdout.splitlines()[-1] == "user bea: unsubscribed from email; subscribed to the rest"


def test_a_journey_names_a_wrong_topic_or_category_before_anything_runs(tmp_path: Path) -> None:
    path = tmp_path / "news.json"
    data = NEWS.model_dump(mode="json")
    data["nodes"][1]["topic"] = "Promotions!"
    data["category"] = "bulk"
    path.write_text(json.dumps(data))
    from journeys.validation.validate import validate_file
    problems = [str(p) for p in validate_file(path)]
    assert any("push-deal" in p and "topic" in p for p in problems), problems
    assert any("category" in p for p in problems), problems
