"""Where a user's runs of journeys that left the catalog are, from the store's entries, on
SQLite and PostgreSQL: every journey entered (a loose scan of its index), which are keyed, and
one user's runs: exact ids for unkeyed journeys, the user's instances for keyed ones, never a
neighbour's (users and keys holding "/", "%", a prefix of another user)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert

from ingestion import retired
from journeys.events import instance_id, workflow_id
from journeys.store.database import Store
from journeys.store.tables import entries
from tests.helpers.postgres import fresh_database

USERS = ["ada", "ada/b", "ad", "ada%2F", "ada0", "a"]
KEYS = ["1", "1/2", "%", "x0"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        yield Store(f"sqlite:///{tmp_path / 'journeys.db'}")
        return
    with fresh_database("journeys_retired") as url:
        opened = Store(url)
        yield opened
        opened.engine.dispose()


def enter(store: Store, journey_id: str, wid: str, user: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(insert(entries).values(workflow_id=wid, run_id=f"r-{wid}", journey_id=journey_id,
                                            user_id=user, held_out=False, at=datetime.now(UTC)))


def test_each_users_runs_and_nobody_elses(store: Store) -> None:
    for user in USERS:
        enter(store, "plain", workflow_id("plain", user), user)
        enter(store, "plain-2", workflow_id("plain-2", user), user)  # a journey id's neighbour
        for key in KEYS:
            enter(store, "carts", instance_id("carts", user, key), user)
    enter(store, "live", workflow_id("live", "ada"), "ada")

    assert retired.entered_journeys(store) == {"plain", "plain-2", "carts", "live"}
    gone = retired.learn(store, ["live", "plain-2"])
    assert gone.ids == {"plain", "carts"} and gone.keyed == {"carts"}
    for user in USERS:
        found = retired.runs_of(store, user, gone)
        assert found == sorted([("plain", workflow_id("plain", user))]
                               + [("carts", instance_id("carts", user, k)) for k in KEYS]), user
    assert retired.runs_of(store, "nobody", gone) == []
    assert retired.runs_of(store, "ada", retired.Retired()) == []
    assert retired.any_entered(store.engine.url.render_as_string(hide_password=False))


def test_a_store_that_does_not_exist_has_entered_nobody(tmp_path: Path) -> None:
    assert not retired.any_entered(f"sqlite:///{tmp_path / 'none' / 'journeys.db'}")
    assert not (tmp_path / "none").exists()  # and asking did not make one
