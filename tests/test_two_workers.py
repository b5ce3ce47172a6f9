"""Two worker processes on one PostgreSQL database: the outbox's unique key and the frequency
caps hold across them.

A dev server (in memory) and two real ``python worker.py`` processes on its task queue, both
with JOURNEYS_DATABASE_URL on one fresh PostgreSQL database and JOURNEYS_CAPS=push=1/1d. Each
user's event enters two journeys that push at once: the two sends race, often on the two
workers, and exactly one is kept (the outbox provider), the other capped; every message is one outbox row and
one delivery. Both workers widen the gap between a cap's count and its insert (0.2 s, as
tests/test_caps.py does in threads), so that the racing sends overlap: without the lock that
serializes a user's sends across processes, both would pass.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from ingestion.router import route_event
from journeys.events import Event
from journeys.language.loader import load_file
from journeys.store.database import Store
from journeys.store.tables import outbox
from tests.helpers.postgres import fresh_database
from tests.helpers.support import ROOT, dev_server
from workflows.models import JourneyState

QUEUE = "two-workers"
USERS = [f"racer-{i}" for i in range(16)]
JOURNEY = """id: {name}
name: Ping {name}
entry: pinged
nodes:
  - id: pinged
    type: action
    event: Ping
    next: push
  - id: push
    type: engagement
    channel: push
    message:
      body: "{name} says hello"
"""
#: worker.py, with the cap's count-to-insert gap widened (a test's patch, in the process).
SLOW_CAPS_WORKER = """
import runpy, sys, time
import journeys.store.caps as caps
real = caps.insert
def slow_insert(*args, **kwargs):
    time.sleep(0.2)
    return real(*args, **kwargs)
caps.insert = slow_insert
sys.argv = ["worker.py"]
runpy.run_path("worker.py", run_name="__main__")
"""


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_database("journeys_two_workers") as url:
        yield url


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


class Worker:
    """``python worker.py`` (no --dev: the test's server; slow caps), its JSON log lines in a file."""

    def __init__(self, name: str, tmp: Path, address: str, database: str, catalog: Path) -> None:
        self.name, self.log = name, tmp / f"{name}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "JOURNEYS_"))}
        env |= {"TEMPORAL_ADDRESS": address, "TEMPORAL_NAMESPACE": "default",
                "JOURNEYS_TASK_QUEUE": QUEUE, "JOURNEYS_DATA_DIR": str(tmp / name),
                "JOURNEYS_DATABASE_URL": database, "JOURNEYS_DIR": str(catalog),
                "JOURNEYS_CAPS": "push=1/1d"}
        with self.log.open("wb") as err:
            self.process = subprocess.Popen([sys.executable, "-c", SLOW_CAPS_WORKER], cwd=ROOT, env=env,
                                            stdout=subprocess.DEVNULL, stderr=err)

    def lines(self) -> list[dict[str, object]]:
        text = self.log.read_text(errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def sends(self) -> list[tuple[str, str]]:
        """(user, status) of each send this worker settled."""
        return [(str(line.get("user_id")), str(line["event"]).removeprefix("message "))
                for line in self.lines() if line.get("event") in ("message kept", "message capped")]

    async def started(self, timeout: float = 30.0) -> None:
        for _ in range(int(timeout * 10)):
            assert self.process.poll() is None, f"{self.name} exited:\n{self.log.read_text()}"
            if any(line.get("event") == "worker started" for line in self.lines()):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} not started in {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


async def test_two_workers_share_the_outbox_key_and_the_caps(env: WorkflowEnvironment, database: str,
                                                             tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    for name in ("ping-a", "ping-b"):
        (catalog / f"{name}.yaml").write_text(JOURNEY.format(name=name))
    journeys = [load_file(path).journey for path in sorted(catalog.iterdir())]
    assert all(journeys)
    address = env.client.service_client.config.target_host
    workers = [Worker(name, tmp_path, address, database, catalog) for name in ("first", "second")]
    try:
        await asyncio.gather(*(worker.started() for worker in workers))
        routed = await asyncio.gather(*(route_event(
            env.client, [j for j in journeys if j], Event(
                id=f"ping-{user}", name="Ping", user_id=user, time=datetime.now(UTC)), QUEUE)
            for user in USERS))
        handles = [env.client.get_workflow_handle(r.workflow_id, result_type=JourneyState)
                   for each in routed for r in each]
        assert len(handles) == 2 * len(USERS)
        states = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 60)
        assert {state.status for state in states} == {"finished"}
    finally:
        codes = [worker.stop() for worker in workers]
    assert codes == [0, 0], [w.log.read_text()[-3000:] for w in workers]

    store = Store(database)
    try:
        rows = store.outbox_list()
        with store.engine.connect() as conn:
            keys = conn.execute(select(func.count(), func.count(outbox.c.idempotency_key.distinct()))
                                .select_from(outbox)).one()
    finally:
        store.engine.dispose()
    # One row per message (the unique key), and per user one push kept, the other capped.
    assert tuple(keys) == (2 * len(USERS), 2 * len(USERS))
    per_user: dict[str, list[str]] = {}
    for row in rows:
        per_user.setdefault(row.user_id, []).append(row.status)
    assert {user: sorted(statuses) for user, statuses in per_user.items()} == {
        user: ["capped", "kept"] for user in USERS}  # kept: the outbox provider
    capped = [row.reason for row in rows if row.status == "capped"]
    assert all(reason and "frequency cap push=1/1d reached" in reason for reason in capped)

    # Each message settled once, by one of the two workers, and both workers sent.
    sends = {worker.name: worker.sends() for worker in workers}
    assert all(sends.values()), sends
    settled = Counter(send for each in sends.values() for send in each)
    assert settled == Counter({**{(user, "kept"): 1 for user in USERS},
                               **{(user, "capped"): 1 for user in USERS}})
    # Some user's two sends raced on the two workers: the cap held across the processes.
    users = [{user for user, _ in each} for each in sends.values()]
    assert users[0] & users[1], sends
