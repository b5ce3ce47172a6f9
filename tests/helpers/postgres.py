"""PostgreSQL for the store's tests: the server of JOURNEYS_TEST_POSTGRES_URL (exported by
``.ci/run`` and ``make test`` from scripts/ci/postgres.sh), a database of its own per use.

Under CI=true a missing URL fails the test; elsewhere the script is tried (it starts an
installed server, it never installs one from here) and the test skips, saying why, only if no
PostgreSQL can be had.
"""

from __future__ import annotations

import functools
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url

from journeys.store.database import Store
from tests.helpers.support import ROOT

SCRIPT = ROOT / "scripts" / "ci" / "postgres.sh"


@functools.cache
def _found() -> tuple[str | None, str]:
    url = os.environ.get("JOURNEYS_TEST_POSTGRES_URL")
    if url:
        return url, ""
    if os.environ.get("CI") == "true":
        return None, ("JOURNEYS_TEST_POSTGRES_URL is not set: .ci/run exports it from "
                      "scripts/ci/postgres.sh")
    run = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "JOURNEYS_PG_NO_INSTALL": "1"})
    found = run.stdout.strip()
    return (found or None), run.stderr.strip() or f"{SCRIPT.name} exited with {run.returncode}"


def postgres_url() -> str:
    """The test server's URL: fails under CI=true, skips elsewhere, when there is none."""
    url, why = _found()
    if url is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI: {why}")
        pytest.skip(f"no PostgreSQL: {why}")
    return url


@contextmanager
def fresh_database(prefix: str = "journeys_t") -> Iterator[str]:
    """A new, empty database on the test server (dropped afterwards); yields its URL."""
    base = make_url(postgres_url())
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@contextmanager
def store_on(kind: str, tmp_path: Path, prefix: str) -> Iterator[Store]:
    """A fresh store on ``kind`` ("sqlite": a file in ``tmp_path``; "postgresql": a database of
    its own), disposed of afterwards: for a fixture parametrized over both."""
    if kind == "sqlite":
        made = Store(f"sqlite:///{tmp_path}/journeys.db")
        try:
            yield made
        finally:
            made.engine.dispose()
        return
    with fresh_database(prefix) as url:
        made = Store(url)
        try:
            yield made
        finally:
            made.engine.dispose()
