"""Frequency caps across journeys: JOURNEYS_CAPS, the sliding window, one count per idempotency
key, and two sends at the same instant through the real send activity and through two
journeys on the time-skipping server: a cap of 1 lets exactly one through."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.sql import Insert
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities import build_activities
from activities.delivery import Delivery, default_providers
from activities.models import SendMessageInput
from activities.providers import Outcome, OutgoingMessage, TransientError, delivered
from journeys.language.models import Channel, Journey
from journeys.language.problems import UsageError
from journeys.settings import load_settings
from journeys.store import caps as caps_module
from journeys.store.caps import Cap, CapCounter, caps_setting, parse_caps
from journeys.store.database import Store
from service.runtime import journey_worker
from tests.helpers.support import Harness

QUEUE = "caps"
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture
def store() -> Store:
    return Store(f"sqlite:///{tempfile.mkdtemp(prefix='journeys-caps-')}/journeys.db")


@pytest.fixture
def slow_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    """Widen the moment between a claim's count and its insert: racing claims overlap there."""
    real = caps_module.insert

    def slow_insert(*args: Any, **kwargs: Any) -> Insert:
        time.sleep(0.05)
        return real(*args, **kwargs)
    monkeypatch.setattr(caps_module, "insert", slow_insert)


# --- JOURNEYS_CAPS ---------------------------------------------------------------------------

def test_the_setting_parses() -> None:
    assert parse_caps("push=3/1d, email=1/12h,all=5/1d") == (
        Cap("push", 3, 24 * H), Cap("email", 1, 12 * H), Cap("all", 5, 24 * H))
    assert parse_caps(None) == parse_caps("") == ()
    assert str(Cap("email", 1, 12 * H)) == "email=1/12h"


@pytest.mark.parametrize("value, message", [
    ("push=3", "JOURNEYS_CAPS: 'push=3' is not a cap: write channel=count/window, e.g. push=3/1d"),
    ("pigeon=1/1d", "JOURNEYS_CAPS: 'pigeon' is not a channel (channels: push, email, sms, "
                    "whatsapp, webhook, web_push, in_app, web_popup, app_inbox, or all)"),
    ("push=0/1d", "JOURNEYS_CAPS: 'push=0/1d': the count must be a whole number from 1"),
    ("push=x/1d", "JOURNEYS_CAPS: 'push=x/1d': the count must be a whole number from 1"),
    ("push=1/1 day", "JOURNEYS_CAPS: 'push=1/1 day': '1 day' is not a duration: write a number "
                     "and a unit (s, m, h, d), e.g. '15h'"),
    ("push=1/0s", "JOURNEYS_CAPS: 'push=1/0s': the window must be longer than 0"),
    ("push=1/1d,push=2/1d", "JOURNEYS_CAPS: 'push' is capped twice"),
])
def test_a_bad_setting_is_one_line(value: str, message: str) -> None:
    with pytest.raises(UsageError) as raised:
        caps_setting(value)
    assert str(raised.value) == message


def test_the_setting_is_checked_with_the_others(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEYS_CAPS", "push=3/1x")
    with pytest.raises(UsageError, match=r"^JOURNEYS_CAPS: 'push=3/1x': '1x' is not a duration"):
        load_settings()
    monkeypatch.setenv("JOURNEYS_CAPS", "push=3/1d")
    caps = caps_setting(load_settings().caps)
    assert [str(c) for c in caps] == ["push=3/1d"]
    names = [getattr(fn, "__temporal_activity_definition").name
             for fn in build_activities(store, caps=caps)]
    assert {"send_message", "check_quiet_hours", "drop_message"} <= set(names)


# --- the counter -----------------------------------------------------------------------------

def test_a_sliding_window_per_channel_and_for_all(store: Store) -> None:
    counter = CapCounter(store, parse_caps("push=2/1d,all=3/12h"))
    assert counter.claim("ada", "push", "k1", T0) is None
    assert counter.claim("ada", "push", "k2", T0 + H) is None
    assert counter.claim("ada", "push", "k3", T0 + 2 * H) == Cap("push", 2, 24 * H)
    assert counter.claim("ada", "email", "k4", T0 + 2 * H) is None  # all: 3 of 3
    assert counter.claim("ada", "sms", "k5", T0 + 3 * H) == Cap("all", 3, 12 * H)
    assert counter.claim("bob", "push", "k6", T0 + 3 * H) is None  # per user
    assert counter.claim("ada", "webhook", "k7", T0 + 11 * H) == Cap("all", 3, 12 * H)
    # 12 h after the first push, it no longer counts for all; push still has 2 in its day.
    assert counter.claim("ada", "sms", "k8", T0 + 12 * H) is None
    assert counter.claim("ada", "push", "k9", T0 + 23 * H) == Cap("push", 2, 24 * H)
    assert counter.claim("ada", "push", "k10", T0 + 25 * H) is None
    assert Cap("push", 2, 24 * H).reason == (
        "not sent: frequency cap push=2/1d reached (2 push messages to this user in the last 1d)")


def test_a_retry_of_a_key_is_not_counted_twice(store: Store) -> None:
    counter = CapCounter(store, parse_caps("push=1/1d"))
    assert counter.claim("ada", "push", "k1", T0) is None
    assert counter.claim("ada", "push", "k1", T0 + H) is None  # the same message again
    assert counter.counted("ada") == 1
    assert counter.claim("ada", "push", "k2", T0 + H) is not None


def test_uncapped_channels_are_not_counted(store: Store) -> None:
    counter = CapCounter(store, parse_caps("push=1/1d"))
    assert counter.claim("ada", "email", "k1", T0) is None
    assert counter.counted("ada") == 0


@pytest.mark.usefixtures("slow_claims")
def test_racing_claims_pass_a_cap_of_one_once(store: Store) -> None:
    counter = CapCounter(store, parse_caps("push=1/1d"))
    barrier = threading.Barrier(6)

    def claim(i: int) -> Cap | None:
        barrier.wait()
        return counter.claim("ada", "push", f"k{i}")
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(claim, range(6)))
    assert results.count(None) == 1
    assert counter.counted("ada") == 1


# --- the send activity -----------------------------------------------------------------------

def message(key: str, user: str = "ada", **fields: Any) -> SendMessageInput:
    return SendMessageInput(idempotency_key=key, journey_id=f"j-{key}", workflow_id=f"wf-{key}",
                            user_id=user, node_id="push", channel=Channel.push,
                            message={"body": "Hello {{ profile.first_name }}"}, **fields)


@pytest.mark.usefixtures("slow_claims")
async def test_two_sends_at_the_same_instant_one_is_capped(store: Store) -> None:
    store.update_profile("ada", {"first_name": "Ada"})
    delivery = Delivery(store, caps=CapCounter(store, parse_caps("push=1/1d")))
    results = await asyncio.gather(*(ActivityEnvironment().run(delivery.send_message, message(key))
                                     for key in ("a", "b")))
    assert sorted(r.status for r in results) == ["capped", "delivered"]  # (kept walks as delivered)
    rows = {r.status: r for r in store.outbox_list(user_id="ada")}
    assert rows["capped"].reason == ("not sent: frequency cap push=1/1d reached "
                                     "(1 push messages to this user in the last 1d)")
    assert rows["capped"].content == {"body": "Hello Ada"}  # what would have gone out
    assert rows["kept"].provider == "outbox"
    # A capped message stays capped: a replayed or retried send finds it.
    again = await ActivityEnvironment().run(delivery.send_message,
                                            message(rows["capped"].idempotency_key))
    assert (again.status, again.duplicate) == ("capped", True)


class FlakyPush:
    """Fails its first call: the retry carries the same key."""

    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        self.calls += 1
        if self.calls == 1:
            raise TransientError("try later")
        return delivered("m-1")


async def test_a_retried_send_counts_once(store: Store) -> None:
    counter = CapCounter(store, parse_caps("push=2/1d"))
    flaky = FlakyPush()
    delivery = Delivery(store, {**default_providers(), Channel.push: flaky}, caps=counter)
    store.update_profile("cy", {"first_name": "Cy"})
    with pytest.raises(TransientError):
        await ActivityEnvironment().run(delivery.send_message, message("c1", user="cy"))
    assert (await ActivityEnvironment().run(delivery.send_message, message("c1", user="cy"))
            ).status == "delivered"
    assert counter.counted("cy") == 1
    assert (await ActivityEnvironment().run(delivery.send_message, message("c2", user="cy"))
            ).status == "delivered"
    assert (await ActivityEnvironment().run(delivery.send_message, message("c3", user="cy"))
            ).status == "capped"


async def test_transactional_journeys_ignore_caps(store: Store) -> None:
    store.update_profile("di", {"first_name": "Di"})
    counter = CapCounter(store, parse_caps("all=1/1d"))
    delivery = Delivery(store, caps=counter)
    first = await ActivityEnvironment().run(delivery.send_message, message("d1", user="di"))
    receipt = await ActivityEnvironment().run(delivery.send_message,
                                              message("d2", user="di", ignore_caps=True))
    assert (first.status, receipt.status) == ("delivered", "delivered")
    assert counter.counted("di") == 1  # neither held nor counted


# --- two journeys, one user, one instant -------------------------------------------------------

def ordered_journey(journey_id: str, **fields: Any) -> Journey:
    return Journey.model_validate({
        "id": journey_id, "name": journey_id, "entry": "ordered", **fields, "nodes": [
            {"id": "ordered", "type": "action", "event": "Ordered", "next": "push"},
            {"id": "push", "type": "engagement", "channel": "push",
             "message": {"body": f"{journey_id}: thanks {{{{ profile.first_name }}}}"},
             "on": {"capped": "email"}},
            {"id": "email", "type": "engagement", "channel": "email",
             "message": {"subject": "Thanks", "text": f"{journey_id}: your order"}}]})


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        yield pool


async def test_two_journeys_sending_at_once_pass_a_cap_of_one_once(
        env: WorkflowEnvironment, store: Store, executor: ThreadPoolExecutor) -> None:
    store.update_profile("eve", {"first_name": "Eve"})
    journeys = [ordered_journey("thanks-a"), ordered_journey("thanks-b"),
                ordered_journey("receipt", ignore_caps=True)]
    activities = build_activities(store, caps=parse_caps("push=1/1d"))
    async with journey_worker(env.client, QUEUE, activities, executor):
        harness = Harness(env, store, journeys, QUEUE)
        routed = await harness.send("eve", "Ordered")
        assert [r.action for r in routed] == ["started"] * 3
        states = {j.id: await harness.result(j.id, "eve") for j in journeys}
        capped = [jid for jid, state in states.items() if state.messages[0].status == "capped"]
        assert len(capped) == 1, states
        await harness.record_history("caps-capped", capped[0], "eve")
    # The capped journey took its `capped` path; the others went on to next (none: the end).
    assert [(m.node_id, m.status) for m in states[capped[0]].messages] == [
        ("push", "capped"), ("email", "delivered")]
    assert states[capped[0]].path == ["ordered", "push", "email"]
    others = [state for jid, state in states.items() if jid != capped[0]]
    assert [[(m.node_id, m.status) for m in s.messages] for s in others] == [[("push", "delivered")]] * 2
    rows = [r for r in store.outbox_list(user_id="eve") if r.channel == "push"]
    assert sorted(r.status for r in rows) == ["capped", "kept", "kept"]
