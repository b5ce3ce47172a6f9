"""The store on SQLite and on PostgreSQL, with the same code: every test runs on both.

PostgreSQL is the server of JOURNEYS_TEST_POSTGRES_URL (``.ci/run`` and ``make test`` start
one, scripts/ci/postgres.sh); this module gets a database of its own, emptied before each test.
Concurrency is threads on several ``Store`` objects (each its own engine and pool, as processes
have); tests/test_two_workers.py runs two worker processes on one PostgreSQL database.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Insert, create_engine, func, inspect, select, text
from sqlalchemy.engine import Engine

from journeys.events import instance_id
from journeys.language.models import IntelliNode
from journeys.store import caps as caps_module
from journeys.store import inbox, migrations, outcomes, subscriptions
from journeys.store.caps import CapCounter, parse_caps
from journeys.store.database import OutboxRow, Store
from journeys.store.intellinode import Allocations, choose, results
from journeys.store.tables import entries, journey_versions, metadata, path_choices
from journeys.store.versions import Versions, keep, version_of
from tests.helpers.postgres import fresh_database
from tests.helpers.support import examples

T = TypeVar("T")
BACKENDS = ["sqlite", "postgresql"]
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def postgres_db() -> Iterator[str]:
    with fresh_database("journeys_backends") as url:
        Store(url).engine.dispose()  # migrated once; each test empties it
        yield url


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store's URL, with nothing in it."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'journeys.db'}"
    found: str = request.getfixturevalue("postgres_db")
    engine = create_engine(found)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(metadata.tables)} RESTART IDENTITY")
    engine.dispose()
    return found


@pytest.fixture
def stores(url: str) -> Iterator[list[Store]]:
    """Four stores on one database, as four processes would have."""
    opened = [Store(url) for _ in range(4)]
    yield opened
    for store in opened:
        store.engine.dispose()


@pytest.fixture
def store(stores: list[Store]) -> Store:
    return stores[0]


def at_once(work: Callable[[int], T], n: int) -> list[T]:
    """``work(i)`` for i < n, in threads released together."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def race(stores: list[Store], work: Callable[[Store, int], T], n: int = 8) -> list[T]:
    """``work(store, i)`` for i < n at once, spread over the stores."""
    return at_once(lambda i: work(stores[i % len(stores)], i), n)


def message(key: str, user: str = "ada", **changes: Any) -> OutboxRow:
    fields: dict[str, Any] = {
        "idempotency_key": key, "journey_id": "j", "user_id": user, "workflow_id": f"journey/j/{user}",
        "node_id": "push-1", "channel": "push", "status": "pending",
        "content": {"body": "Hé, ça va? 👋"}}
    return OutboxRow(**(fields | changes))


# --- the schema ------------------------------------------------------------------------------

def test_the_migrations_make_the_tables_of_journeys_tables(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert context.get_current_revision() == migrations.HEAD
    config = Config()
    config.set_main_option("script_location", str(migrations.FOLDER))
    assert ScriptDirectory.from_config(config).get_current_head() == migrations.HEAD


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_new_database_is_made_as_every_revision_in_turn_makes_it(backend: str, tmp_path: Path) -> None:
    """A new database is created from journeys/store/tables.py and stamped HEAD; a database of
    each earlier release goes through the revisions. Both ways give one schema: the same
    columns (type, nullability, server default), keys, indexes and constraints, at HEAD (only a
    column's place differs: a revision appends it)."""
    def schema(url: str, scripts: bool) -> dict[str, Any]:
        engine = create_engine(url)
        with engine.begin() as conn:
            migrations.upgrade(conn, scripts=scripts)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True})
            assert compare_metadata(context, metadata) == []
            assert context.get_current_revision() == migrations.HEAD
            found = _schema(conn)
        engine.dispose()
        return found

    if backend == "sqlite":
        assert schema(f"sqlite:///{tmp_path / 'new.db'}", False) == schema(
            f"sqlite:///{tmp_path / 'scripts.db'}", True)
    else:
        with fresh_database("journeys_made") as made, fresh_database("journeys_scripts") as scripts:
            assert schema(made, False) == schema(scripts, True)


def _schema(conn: Any) -> dict[str, Any]:
    found = inspect(conn)
    return {table: {
        "columns": sorted((c["name"], str(c["type"]), c["nullable"], c.get("default"))
                          for c in found.get_columns(table)),
        "key": found.get_pk_constraint(table),
        "indexes": sorted((i["name"], tuple(i["column_names"]), i["unique"])
                          for i in found.get_indexes(table)),
        "unique": sorted((u["name"], tuple(u["column_names"])) for u in found.get_unique_constraints(table)),
        "foreign": sorted((tuple(f["constrained_columns"]), f["referred_table"])
                          for f in found.get_foreign_keys(table)),
    } for table in found.get_table_names()}


def test_stores_opening_a_new_database_at_once_migrate_it_once() -> None:
    """A worker and a command (or two workers) opening a database nobody has opened yet."""
    with fresh_database("journeys_new") as url:
        opened = at_once(lambda i: Store(url), 4)
        with opened[0].engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            assert versions == [migrations.HEAD]
        for store in opened:
            store.engine.dispose()


def _create_all_database(engine: Engine) -> None:
    """A database as the releases before the migrations left it: create_all, no alembic_version;
    this one from before the caps and outbox.provider_message_id (release 0.1's outbox)."""
    with engine.begin() as conn:
        metadata.create_all(conn, tables=[t for name, t in metadata.tables.items() if name != "cap_sends"])
        conn.exec_driver_sql("DROP INDEX ix_outbox_provider_message_id")  # (an index of 0006 on it)
        conn.exec_driver_sql("ALTER TABLE outbox DROP COLUMN provider_message_id")
        conn.exec_driver_sql("INSERT INTO outbox (idempotency_key, journey_id, user_id, workflow_id, "
                             "node_id, channel, status, content, created_at, updated_at) VALUES ('k', 'j', "
                             "'ada', 'w', 'n', 'push', 'delivered', '{\"body\": \"hi\"}', "
                             "'2026-11-01 00:00:00', '2026-11-01 00:00:00')")
        conn.exec_driver_sql("INSERT INTO profiles VALUES ('ada', '{\"first_name\": \"Ada\"}', "
                             "'2026-11-01 00:00:00')")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_database_made_by_create_all_is_adopted(backend: str, tmp_path: Path) -> None:
    """Databases of earlier releases (create_all, no alembic_version) open, keep their rows, gain
    what they lack (cap_sends, outbox.provider_message_id) and are at HEAD afterwards."""
    def check(url: str) -> None:
        engine = create_engine(url)
        _create_all_database(engine)
        opened = at_once(lambda i: Store(url), 3)
        store = opened[0]
        [row] = store.outbox_list()
        assert (row.idempotency_key, row.content, row.provider_message_id) == ("k", {"body": "hi"}, None)
        assert store.profile("ada") == {"first_name": "Ada"}
        assert CapCounter(store, parse_caps("push=1/1d")).claim("ada", "push", "k2") is None
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert context.get_current_revision() == migrations.HEAD
            assert compare_metadata(context, metadata) == []
        for each in opened:
            each.engine.dispose()
        engine.dispose()

    if backend == "sqlite":
        check(f"sqlite:///{tmp_path / 'old.db'}")
    else:
        with fresh_database("journeys_old") as url:
            check(url)


_OPEN = """
import sys, time
from sqlalchemy import event
from sqlalchemy.engine import Engine
from journeys.store.database import Store
statements = []
event.listen(Engine, "before_cursor_execute", lambda c, cur, statement, *a: statements.append(statement))
started = time.perf_counter()
Store(sys.argv[1])
print(round((time.perf_counter() - started) * 1000, 1), "alembic" in sys.modules, statements)
"""


def test_opening_a_database_at_head_is_one_query_without_alembic(url: str) -> None:
    """Every CLI command opens the store: at HEAD that is one SELECT, and Alembic is not imported."""
    Store(url).engine.dispose()
    run = subprocess.run([sys.executable, "-c", _OPEN, url], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    milliseconds, imported, statements = run.stdout.split(" ", 2)
    assert (imported, statements.strip()) == ("False", "['SELECT version_num FROM alembic_version']")
    assert float(milliseconds) < 1000  # tens of ms; a loaded CI machine gets room


# --- profiles --------------------------------------------------------------------------------

def test_profile_merges_at_once_keep_every_key(stores: list[Store]) -> None:
    def merge(store: Store, i: int) -> None:
        for n in range(10):
            store.update_profile("racer", {f"k{i}-{n}": n, "nested": {"list": [i, None, "ü"]}})

    race(stores, merge)
    profile = stores[0].profile("racer")
    assert len(profile) == 8 * 10 + 1 and profile["nested"]["list"][1:] == [None, "ü"]
    stores[1].update_profile("racer", {"tokens": ["a", "b", "a"]})
    stores[2].remove_from_profile("racer", "tokens", "a")
    assert stores[3].profile("racer")["tokens"] == ["b"]
    assert stores[0].profile("nobody") == {}


# --- the outbox ------------------------------------------------------------------------------

def test_the_outbox_key_is_claimed_once(stores: list[Store]) -> None:
    claims = race(stores, lambda store, i: store.outbox_claim(message("key-1")))
    assert sorted(inserted for _, inserted in claims) == [False] * 7 + [True]
    assert {row.idempotency_key for row, _ in claims} == {"key-1"}
    stores[1].outbox_finish("key-1", "delivered", provider="outbox", provider_message_id="m-1")
    stored, inserted = stores[2].outbox_claim(message("key-1"))  # a retry finds it sent
    assert not inserted and stored.status == "delivered" and stored.provider_message_id == "m-1"
    assert stored.content == {"body": "Hé, ça va? 👋"}
    assert stored.created_at is not None and stored.created_at.tzinfo is not None
    assert abs(stored.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert stores[3].outbox_cancel(message("key-1")).status == "delivered"  # sent: stays sent


def test_the_outbox_cancels_lists_and_reads_back(store: Store) -> None:
    store.outbox_claim(message("key-2"))
    assert store.outbox_cancel(message("key-2", reason="not sent: exit")).status == "cancelled"
    assert store.outbox_cancel(message("key-3", user="bob")).status == "cancelled"  # never claimed
    store.outbox_claim(message("key-4"))
    assert [r.idempotency_key for r in store.outbox_list(user_id="ada")] == ["key-2", "key-4"]
    assert [r.idempotency_key for r in store.outbox_list(workflow_id="journey/j/bob")] == ["key-3"]
    assert len(store.outbox_list(journey_id="j")) == 3
    known, profile, kept = store.send_context("key-4", "ada")
    assert known is not None and known.status == "pending" and profile == {} and kept is None


def test_the_longest_keyed_ids_fit(store: Store) -> None:
    """A keyed journey's id holds a user and a key of 200 characters each, escaped ('/' is three
    characters): PostgreSQL enforces column lengths (migration 0002 made room)."""
    workflow_id = instance_id("j", "/" * 200, "/" * 200)
    key = f"{workflow_id}:{'r' * 36}:push-1"
    assert len(key) > 1200
    row, inserted = store.outbox_claim(message(key, workflow_id=workflow_id))
    assert inserted and row.workflow_id == workflow_id
    assert [r.idempotency_key for r in store.outbox_list(workflow_id=workflow_id)] == [key]
    store.record_entry("j", workflow_id, "run-1", "ada", held_out=False)


def test_what_each_address_answered_is_kept_per_message(store: Store) -> None:
    """Migration 0003's send_addresses: written after each attempt, read by the next (a key of
    the longest keyed id, a digest per address, a vendor id of 200 characters)."""
    from journeys.store.database import AddressMark

    key = f"{instance_id('j', '/' * 200, '/' * 200)}:{'r' * 36}:push-1"
    assert store.send_marks(key) == {}
    store.send_mark(key, {"a" * 64: AddressMark(status="sent", unanswered=1),
                          "b" * 64: AddressMark(status="delivered", provider_message_id="m" * 200)})
    store.send_mark(key, {"a" * 64: AddressMark(status="sent", unanswered=2)})  # the next attempt
    store.send_mark("another", {"a" * 64: AddressMark(status="failed")})
    assert store.send_marks(key) == {"a" * 64: AddressMark(status="sent", unanswered=2),
                                     "b" * 64: AddressMark(status="delivered", provider_message_id="m" * 200)}


# --- the inbox and event receipts --------------------------------------------------------------

def test_the_inbox_adds_once_per_key(stores: list[Store]) -> None:
    ids = race(stores, lambda store, i: inbox.add(
        store, "in-1", "ada", "j", "n", "in_app", {"title": "Hi"}))
    assert len(set(ids)) == 1
    inbox.add(stores[0], "in-2", "ada", "j", "n", "app_inbox", {"title": "Again ✓"})
    listed = inbox.messages(stores[1], "ada")
    assert [(m.channel, m.content["title"]) for m in listed] == [("in_app", "Hi"), ("app_inbox", "Again ✓")]
    assert all(m.created_at.tzinfo is not None for m in listed)


def test_an_event_is_claimed_first_by_one_router(stores: list[Store]) -> None:
    states = race(stores, lambda store, i: store.claim_event("j", "ada", "evt-1"))
    assert sorted(states) == ["earlier"] * (len(states) - 1) + ["new"]
    stores[1].settle_event("j", "ada", "evt-1")
    assert {store.claim_event("j", "ada", "evt-1") for store in stores} == {"done"}


def test_an_entry_event_is_kept_with_its_claim(stores: list[Store]) -> None:
    """Interpreter 4: the claim keeps an entry event (JSON: nested, unicode) for the journey's
    activities; a later copy's claim does not replace it; a send reads it with its record and
    the profile."""
    cart = {"id": "evt-2", "name": "Added To Cart", "user_id": "ada", "time": "2026-12-03T10:00:00Z",
            "properties": {"product_name": "iPhone 14 “Pro”", "price": 799.5, "tags": ["a", {"b": None}]}}
    assert stores[0].claim_event("j", "ada", "evt-2", cart) == "new"
    assert stores[1].claim_event("j", "ada", "evt-2", {**cart, "name": "other"}) == "earlier"
    assert stores[1].kept_event("j", "ada", "evt-2") == cart
    assert stores[1].kept_event("j", "bob", "evt-2") is None  # another user's: none
    assert stores[0].claim_event("j", "ada", "evt-3") == "new"  # not an entry: nothing kept
    assert stores[0].kept_event("j", "ada", "evt-3") is None
    stores[0].settle_event("j", "ada", "evt-2")
    assert stores[1].send_context("key-x", "ada", ("j", "evt-2")) == (None, {}, cart)


# --- frequency caps ----------------------------------------------------------------------------

@pytest.fixture
def slow_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    """Widen the moment between a claim's count and its insert: racing claims overlap there."""
    real = caps_module.insert

    def slow_insert(*args: Any, **kwargs: Any) -> Insert:
        time.sleep(0.02)
        return real(*args, **kwargs)
    monkeypatch.setattr(caps_module, "insert", slow_insert)


def test_a_cap_holds_across_stores_at_once(stores: list[Store], slow_claims: None) -> None:
    counters = {id(s): CapCounter(s, parse_caps("push=2/1d,all=3/1d")) for s in stores}
    held = race(stores, lambda store, i: counters[id(store)].claim("ada", "push", f"k{i}", T0))
    assert held.count(None) == 2 and {str(cap) for cap in held if cap} == {"push=2/1d"}
    # Other users are not held by ada's sends, nor serialized behind them.
    others = race(stores, lambda store, i: counters[id(store)].claim(f"u{i}", "push", f"o{i}", T0))
    assert others == [None] * 8
    counter = counters[id(stores[0])]
    assert counter.claim("ada", "email", "e1", T0 + timedelta(hours=1)) is None
    assert counter.claim("ada", "sms", "s1", T0 + timedelta(hours=1)) is not None  # all: 3 of 3
    assert counter.claim("ada", "push", "k-late", T0 + timedelta(days=2)) is None  # the window slid
    assert counter.counted("ada") == 1  # the rows older than every window went


# --- entries, outcomes, IntelliNODE choices ----------------------------------------------------

def test_entries_outcomes_and_path_choices_are_recorded_once(stores: list[Store]) -> None:
    race(stores, lambda store, i: store.record_entry("j", "journey/j/ada", "run-1", "ada", False))
    with stores[0].engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(entries)).scalar_one() == 1

    outcome = outcomes.Outcome(journey_id="j", run_key="run-1", kind="ended", user_id="ada",
                               workflow_id="journey/j/ada", node_id="push-1", reason="exit event",
                               nodes=["entry", "push-1"],
                               paths=[outcomes.TakenPath(node="split", path="a")])
    recorded = race(stores, lambda store, i: outcomes.record(store, outcome))
    assert recorded.count(True) == 1
    [found] = outcomes.of_journey(stores[1], "j", kind="ended")
    assert (found.nodes, found.paths, found.reason) == (["entry", "push-1"], outcome.paths, "exit event")
    assert found.at is not None and found.at.tzinfo is not None

    node = IntelliNode.model_validate({"id": "split", "type": "intellinode", "mode": "manual",
                                       "paths": [{"next": "a", "percent": 50}, {"next": "b", "percent": 50}]})
    allocations = Allocations()
    chosen = race(stores, lambda store, i: choose(store, "j", node, run_key="run-1", user_id="ada",
                                                  held_out=False, allocations=allocations))
    assert len(set(chosen)) == 1
    with stores[0].engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(path_choices)).scalar_one() == 1
    outcomes.record(stores[0], outcome.model_copy(update={"kind": "converted", "goal": "Charged"}))
    assert [(r.path, r.entered, r.converted) for r in results(stores[1], "j", "split")] == [(chosen[0], 1, 1)]


def test_the_store_runs_on_the_dialect_it_was_given(url: str, store: Store) -> None:
    assert store.engine.dialect.name == url.split(":")[0].split("+")[0]
    assert "cap_sends" in inspect(store.engine).get_table_names()


def test_a_journey_version_is_kept_once_and_read_by_another_process(stores: list[Store]) -> None:
    """Four routers keep the same version at once (one row); a worker of another process, with
    nothing in memory, reads the same definition back; a version no store has is named."""
    journey = examples()["abandoned-cart"]
    race(stores, lambda store, i: keep(store, [journey]))
    with stores[0].engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(journey_versions)).scalar_one() == 1
    worker = Versions()
    worker.use(stores[3])
    assert worker.get("abandoned-cart", version_of(journey)) == journey
    with pytest.raises(LookupError, match="version ffff"):
        worker.get("abandoned-cart", "ffff")


def test_a_subscription_changed_at_once_by_many_is_one_row_and_one_change(stores: list[Store]) -> None:
    # Eight processes unsubscribe the same user at once: one of them changes it, once audited.
    changed = race(stores, lambda s, i: subscriptions.change(
        s, "ada", "email", subscribed=False, how="api", source=f"api {i}"))
    assert changed.count(True) == 1
    store = stores[0]
    assert [(c.channel, c.topic, c.subscribed) for c in subscriptions.changes(store, "ada")] == [
        ("email", "", False)]
    assert subscriptions.unsubscribed(store, "ada", "email", "newsletter") == "unsubscribed from email"
    subscriptions.change(store, "ada", "email", subscribed=True, how="cli")
    subscriptions.change(store, "ada", "email", topic="newsletter", subscribed=False, how="link")
    assert subscriptions.unsubscribed(store, "ada", "email") is None
    assert subscriptions.unsubscribed(store, "ada", "email", "newsletter") == (
        "unsubscribed from email topic 'newsletter'")
    assert [(s.topic, s.subscribed) for s in subscriptions.of_user(stores[1], "ada")] == [
        ("", True), ("newsletter", False)]
    assert len(subscriptions.changes(stores[1], "ada")) == 3
