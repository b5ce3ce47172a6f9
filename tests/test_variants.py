"""Messages in the user's language and content variants (issue 19, parts 2 and 3), end to end
on the time-skipping server with the real send activity: a French, a Brazilian, a Portuguese and
a German user each get their version and their formats; variants split users (the same one each
time a user comes), are recorded in the outbox and the history, counted by ``stats`` with their
conversions; ``starter.py variants --winner`` sends everyone the winner from then on."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from journeys.funnel.report import render_report
from journeys.funnel.stats import format_stats, journey_stats
from journeys.funnel.variants import chances_best, wilson
from journeys.language.messages import Message
from journeys.language.models import EngagementNode, Journey
from journeys.personalization.choice import choose, pick_locale, pick_variant
from journeys.store.database import OutboxRow, Store
from tests.helpers.support import ROOT, Harness
from tests.test_audiences import record

QUEUE = "variants"
PRICE = "{{ event.price | currency('EUR') }} ({{ event.at | date('long') }})"
VERSIONS = {"default": {"title": "Price drop", "body": f"Now {PRICE}"},
            "fr": {"title": "Baisse de prix", "body": f"Maintenant {PRICE}"},
            "pt": {"title": "Preço baixou", "body": f"Agora {PRICE}"},
            "pt-BR": {"title": "Baixou o preço", "body": f"Agora só {PRICE}"}}
LOCALIZED = Journey.model_validate({
    "id": "localized", "name": "Localized", "entry": "wished", "reentry": "after_exit",
    "nodes": [{"id": "wished", "type": "action", "event": "Price Dropped", "next": "push"},
              {"id": "push", "type": "engagement", "channel": "push", "message": VERSIONS}]})
TESTED = Journey.model_validate({
    "id": "tested", "name": "Tested", "entry": "wished", "reentry": "after_exit", "goals": ["Charged"],
    "nodes": [
        {"id": "wished", "type": "action", "event": "Added To Wishlist", "next": "push"},
        {"id": "push", "type": "engagement", "channel": "push", "next": "wait", "variants": [
            {"name": "a", "weight": 1, "message": {"body": "A: {{ event.price }}"}},
            {"name": "b", "weight": 1, "message": {"default": {"body": "B: {{ event.price }}"},
                                                   "fr": {"body": "B fr: {{ event.price }}"}}}]},
        {"id": "wait", "type": "delay", "duration": "1h"}]})


def sent(journeys: Harness, journey_id: str, user: str) -> list[OutboxRow]:
    return journeys.store.outbox_list(user_id=user, journey_id=journey_id)


@pytest.fixture
def journeys(env: WorkflowEnvironment, store: Store, worker: None) -> Harness:
    return Harness(env, store, [LOCALIZED, TESTED], QUEUE)


def test_a_locale_falls_back_to_its_language_then_the_default() -> None:
    locales: dict[str, Message] = {"fr": {}, "pt": {}, "pt-BR": {}}
    assert [pick_locale(locales, tag) for tag in ("fr-CA", "pt_BR", "PT-br", "pt-PT", "de", None)] == [
        "fr", "pt-BR", "pt-BR", "pt", None, None]


def test_a_variant_is_the_users_each_time_by_weight_and_the_winner_takes_over() -> None:
    node = TESTED.node("push")
    assert isinstance(node, EngagementNode)
    picked = Counter(pick_variant(node.variants, "tested", "push", f"u{i}").name for i in range(2000))
    assert 900 < picked["a"] < 1100 and picked["a"] + picked["b"] == 2000
    assert {pick_variant(node.variants, "tested", "push", "u7").name for _ in range(5)} == {
        pick_variant(node.variants, "tested", "push", "u7").name}
    won = {pick_variant(node.variants, "tested", "push", f"u{i}", winner="b").name for i in range(50)}
    assert won == {"b"}
    chosen = choose(node, {"language": "fr"}, "tested", "push", winner="b")
    assert (chosen.variant, chosen.locale, chosen.message) == ("b", "fr", {"body": "B fr: {{ event.price }}"})


def test_wilson_and_the_chance_of_being_best() -> None:
    low, high = wilson(0, 10)
    assert low == 0 and high is not None and 0.27 < high < 0.28
    assert wilson(5, 0) == (None, None)
    clear = chances_best([(10, 100), (30, 100)])
    assert clear[1] is not None and clear[1] > 0.99
    even = chances_best([(20, 100), (20, 100)])
    assert even[0] is not None and 0.45 < even[0] < 0.55
    assert chances_best([(1, 10), (0, 0)]) == [None, None]


async def test_each_user_gets_their_locales_version_and_formats(journeys: Harness) -> None:
    people = {"fleur": "fr", "bia": "pt-BR", "joao": "pt_PT", "hans": "de-DE", "ann": None}
    for user, locale in people.items():
        journeys.store.update_profile(user, {"locale": locale, "timezone": "Europe/Paris"} if locale else {})
        await journeys.send(user, "Price Dropped", {"price": 799, "at": "2026-12-24T10:00:00Z"})
    for user in people:
        await journeys.result("localized", user)
    got = {user: sent(journeys, "localized", user)[0] for user in people}
    assert {u: (r.locale, r.content["title"], r.content["body"]) for u, r in got.items()} == {
        "fleur": ("fr", "Baisse de prix", "Maintenant 799,00\xa0€ (24 décembre 2026)"),
        "bia": ("pt-BR", "Baixou o preço", "Agora só €\xa0799,00 (24 de dezembro de 2026)"),
        "joao": ("pt", "Preço baixou", "Agora 799,00\xa0€ (24 de dezembro de 2026)"),
        "hans": ("default", "Price drop", "Now 799,00\xa0€ (24. Dezember 2026)"),
        "ann": ("default", "Price drop", "Now €799.00 (December 24, 2026)")}
    assert all(r.variant is None for r in got.values())


async def test_variants_split_users_are_recorded_and_a_winner_takes_over(
        journeys: Harness, env: WorkflowEnvironment, data_dir: Path, tmp_path: Path) -> None:
    users = [f"v{i:02d}" for i in range(24)]
    for user in users:
        await journeys.send(user, "Added To Wishlist", {"price": 10})
    buyers = users[:6]
    for user in buyers:  # converted while the journey waits its hour
        await journeys.send(user, "Charged", {"amount": 10})
    for user in users:
        await journeys.result("tested", user)
    rows = {user: sent(journeys, "tested", user)[0] for user in users}
    split = Counter(r.variant for r in rows.values())
    assert set(split) == {"a", "b"} and sum(split.values()) == 24
    assert all(r.content["body"] == f"{r.variant.upper()}: 10" for r in rows.values() if r.variant)
    # The variant is in the history too: the send's result.
    history = await journeys.handle("tested", users[0]).fetch_history()
    results = [json.loads(e.activity_task_completed_event_attributes.result.payloads[0].data)
               for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED]
    assert rows[users[0]].variant in [r.get("variant") for r in results if isinstance(r, dict)]
    await record(env, "content-variant", f"journey/tested/{users[0]}")
    # A user who comes again gets the same variant.
    await journeys.send(users[1], "Added To Wishlist", {"price": 12})
    await journeys.result("tested", users[1])
    again = sent(journeys, "tested", users[1])
    assert len(again) == 2 and again[0].variant == again[1].variant
    # stats: per variant, the users it was delivered to and who converted.
    stats = journey_stats(journeys.store, TESTED)
    [found] = stats.variants
    by_name = {v.name: v for v in found.variants}
    assert by_name["a"].delivered + by_name["b"].delivered == 24
    assert by_name["a"].converted + by_name["b"].converted == 6
    assert by_name["a"].converted == sum(rows[u].variant == "a" for u in buyers)
    assert all(v.best is not None and v.low is not None for v in found.variants)
    assert "variants of push:" in format_stats(stats)
    page = render_report(journeys.store, TESTED, stats)
    assert "<h3>push</h3>" in page and "<th>chance best</th>" in page

    # starter.py variants --winner b: everyone gets b from now on.
    (tmp_path / "tested.yaml").write_text(json.dumps(TESTED.model_dump(mode="json", exclude_defaults=True)))
    environ = {"PATH": "/usr/bin:/bin", "JOURNEYS_DATA_DIR": str(data_dir), "JOURNEYS_DIR": str(tmp_path)}

    def variants(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "starter.py", "variants", "tested", "push", *args],
                              cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)
    won = await asyncio.to_thread(variants, "--winner", "b")
    assert won.returncode == 0, won.stderr
    assert "winner b: everyone gets it" in won.stdout and " winner b\n" in won.stdout + "\n"
    later = [f"w{i:02d}" for i in range(10)]
    for user in later:
        await journeys.send(user, "Added To Wishlist", {"price": 11})
    for user in later:
        await journeys.result("tested", user)
    assert {sent(journeys, "tested", u)[0].variant for u in later} == {"b"}
    shown = json.loads((await asyncio.to_thread(variants, "--json")).stdout)
    assert shown["winner"] == "b" and [c["winner"] for c in shown["changes"]] == ["b"]
    refused = await asyncio.to_thread(variants, "--winner", "c")
    assert refused.returncode == 2 and "no variant 'c'; its variants: a, b" in refused.stderr
