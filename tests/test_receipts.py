"""Event receipts: an event id routed once per user and journey, across routers and processes;
only a routed ("done") event makes a copy a duplicate."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from journeys.store.database import Store


def test_only_a_routed_event_makes_a_copy_a_duplicate(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    assert store.claim_event("j", "ada", "evt-1") == "new"
    # Claimed, not routed (in flight elsewhere, or its router died): a copy is routed again.
    assert store.claim_event("j", "ada", "evt-1") == "earlier"
    assert store.claim_event("j", "ada", "evt-1") == "earlier"
    store.settle_event("j", "ada", "evt-1")
    assert store.claim_event("j", "ada", "evt-1") == "done"
    assert store.claim_event("j", "bob", "evt-1") == "new" and store.claim_event("k", "ada", "evt-1") == "new"


def test_a_claim_of_an_earlier_release_hides_nothing(tmp_path: Path) -> None:
    """Release 0.4 kept a router's token in ``state``: such a claim is "earlier", whatever its age."""
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO event_receipts (journey_id, user_id, event_id, state, "
                             "created_at) VALUES ('j', 'ada', 'evt-2', "
                             "'4f1c0e6a9b7d4c2e8f0a1b2c3d4e5f60', CURRENT_TIMESTAMP)")
    assert store.claim_event("j", "ada", "evt-2") == "earlier"


HOLD_THE_LOCK = textwrap.dedent("""
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline()
""")


def test_a_store_locked_by_another_process_is_not_writable(tmp_path: Path) -> None:
    """The readiness probe's check: bounded by its wait, whatever SQLite's busy timeout."""
    path = tmp_path / "j.db"
    store = Store(f"sqlite:///{path}")
    store.check_writable(0.5)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(Exception, match="locked"):
            store.check_writable(0.2)
    finally:
        holder.communicate("\n", timeout=10)
    store.check_writable(0.5)
    with store.engine.connect() as conn:  # the pooled connection waits as long as before
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
