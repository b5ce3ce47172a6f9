"""The API's event loop stays free (issue 15, the event-loop minor): while another process holds
SQLite's write lock, or a changed catalog is being validated, ``/health`` answers and the
requests that wait on them wait alone. Real parts: the dev server, a SQLite file locked by a
second process, the app on uvicorn."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from journeys.settings import Settings
from journeys.store.database import Store
from tests.helpers.serving import serving
from tests.helpers.support import dev_server, parked_catalog

QUEUE = "journeys-http-loop"
KEY = "loop-key"

#: Holds SQLite's write lock on the file given until its standard input closes.
LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return parked_catalog(tmp_path_factory.mktemp("catalog"), "cart", "Added To Cart")


@pytest.fixture(scope="module")
def api(env: WorkflowEnvironment, data_dir: Path, catalog: Path, store: Store) -> Iterator[str]:
    settings = Settings(TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
                        JOURNEYS_TASK_QUEUE=QUEUE, JOURNEYS_DATA_DIR=data_dir, JOURNEYS_DIR=catalog,
                        JOURNEYS_WRITE_KEY=KEY,
                        # Not 10 s: validating the big catalog can take longer on a busy machine
                        # (pytest-xdist), and what is timed here is /health (the clients wait 60 s).
                        JOURNEYS_ROUTE_TIMEOUT=50)
    store.profile("nobody")  # the tables exist before anything is locked
    with serving(settings) as url:
        yield url


async def _track(url: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(auth=(KEY, ""), timeout=60) as http:
        return await http.post(f"{url}/v1/track", json=body)


async def _health_while(url: str, pending: asyncio.Task[httpx.Response]) -> None:
    """/health answers, and ``pending`` is still waiting when it has."""
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(3):
            assert (await http.get(f"{url}/health")).status_code == 200
            assert not pending.done()


@pytest.mark.parametrize("body", [
    {"userId": "locked-1", "event": "Added To Cart"},  # the event's receipt
    {"userId": "locked-2", "event": "Added To Cart", "traits": {"plan": "pro"}},  # and the profile
])
async def test_health_answers_while_another_process_holds_the_write_lock(
        api: str, data_dir: Path, body: dict[str, Any]) -> None:
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(data_dir / "journeys.db")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert locker.stdin is not None and locker.stdout is not None
    try:
        assert locker.stdout.readline().strip() == "locked"
        pending = asyncio.create_task(_track(api, body))
        await asyncio.sleep(0.5)  # the request reached the store and waits on the lock
        assert not pending.done()
        await _health_while(api, pending)
    finally:
        locker.stdin.close()
        locker.wait(timeout=30)
    assert (await pending).status_code == 200


def _big(nodes: int) -> dict[str, Any]:
    """A journey of ``nodes`` messages: each template is compiled when it is validated (seconds)."""
    text = "Hi {{ profile.first_name | default('you') }} {{ event.name | default('') }}"
    chain: list[dict[str, Any]] = [
        {"id": f"m{i}", "type": "engagement", "channel": "sms", "message": {"text": f"{text} {i}"},
         **({"next": f"m{i + 1}"} if i + 1 < nodes else {})} for i in range(nodes)]
    entry = {"id": "in", "type": "action", "event": "Big Event", "next": "m0"}
    return {"id": "big", "name": "big", "entry": "in", "nodes": [entry, *chain]}


class _Changes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("journey catalog changed"):
            self.seen.append(record.getMessage())


async def test_health_answers_while_a_changed_catalog_is_validated(api: str, catalog: Path) -> None:
    """A journey of thousands of messages takes seconds to validate: in a thread, not on the loop."""
    logger, changes = logging.getLogger("journeys.ingestion"), _Changes()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(changes)
    try:
        (catalog / "big.yaml").write_text(yaml.safe_dump(_big(3000)))
        await asyncio.sleep(1.1)  # the folder is due a look (once a second at most)
        pending = asyncio.create_task(_track(api, {"userId": "big-1", "event": "Added To Cart"}))
        await asyncio.sleep(0.3)  # the request found the change: the new catalog is validated
        await _health_while(api, pending)
        assert not changes.seen  # /health answered while the validation still ran
        assert (await pending).status_code == 200
        assert changes.seen  # and the change was read
    finally:
        logger.removeHandler(changes)
        logger.setLevel(level)
