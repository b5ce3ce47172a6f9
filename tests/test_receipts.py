"""Event receipts: an event id routed once per user and journey, across routers and processes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from journeys.store import CLAIM_STALE, Store, event_receipts


def test_a_routed_event_is_claimed_once(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    token = store.claim_event("j", "ada", "evt-1")
    assert token is not None
    assert store.claim_event("j", "ada", "evt-1") is None  # being routed: a concurrent redelivery
    store.settle_event("j", "ada", "evt-1", token, routed=True)
    assert store.claim_event("j", "ada", "evt-1") is None  # routed: a duplicate for good
    assert store.claim_event("j", "bob", "evt-1") and store.claim_event("k", "ada", "evt-1")


def test_a_failed_routing_frees_only_its_own_claim(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    first = store.claim_event("j", "ada", "evt-2")
    assert first is not None
    store.settle_event("j", "ada", "evt-2", "not-my-claim", routed=False)  # another router failed
    assert store.claim_event("j", "ada", "evt-2") is None  # the claim still stands
    store.settle_event("j", "ada", "evt-2", first, routed=False)  # its own router failed
    again = store.claim_event("j", "ada", "evt-2")
    assert again is not None  # the event may come again
    store.settle_event("j", "ada", "evt-2", again, routed=True)
    store.settle_event("j", "ada", "evt-2", again, routed=False)  # too late: done stays done
    assert store.claim_event("j", "ada", "evt-2") is None


def test_a_dead_routers_claim_is_taken_over(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    dead = store.claim_event("j", "ada", "evt-3")
    assert dead is not None
    with store.engine.begin() as conn:  # the router died a while ago
        conn.execute(update(event_receipts).values(
            created_at=datetime.now(UTC) - CLAIM_STALE - timedelta(seconds=1)))
    taker = store.claim_event("j", "ada", "evt-3")
    assert taker is not None and taker != dead
    assert store.claim_event("j", "ada", "evt-3") is None  # one taker only
    store.settle_event("j", "ada", "evt-3", dead, routed=False)  # the dead one's late word: nothing
    store.settle_event("j", "ada", "evt-3", taker, routed=True)
    assert store.claim_event("j", "ada", "evt-3") is None
