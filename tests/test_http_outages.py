"""The HTTP API when a part is down (issue 15, case 1 and 2): Temporal unreachable, Temporal
hung (a server that takes the connection and never answers), the store locked by another
process. A failure a retry can fix is 503 with ``Retry-After``, answered within
``JOURNEYS_ROUTE_TIMEOUT`` (each client below gives up well before the SDK's own 30 s or
SQLite's 10 s, so a hang fails the test); ``/ready`` says so while ``/health`` stays 200; and a
copy of an event is answered 200 only once its first copy was routed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from connection.converter import data_converter
from ingestion.http_api import create_app
from ingestion.pipeline import Ingestion
from ingestion.router import Router
from journeys.events import Event
from journeys.settings import Settings
from journeys.store.database import Store
from journeys.store.tables import entries
from service.runtime import binary
from tests.helpers.support import ROOT, dev_server, free_port, running_worker
from tests.test_receipts import HOLD_THE_LOCK
from workflows.models import SEARCH_ATTRIBUTES

QUEUE = "journeys-outages"
KEY = "outage-key"
DEADLINE = 2.0  # JOURNEYS_ROUTE_TIMEOUT here
PATIENCE = 8.0  # how long a client below waits for an answer: past DEADLINE, short of any hang
CART = {"id": "cart", "name": "cart", "entry": "entered", "reentry": "after_exit",
        "nodes": [{"id": "entered", "type": "action", "event": "Added To Cart", "next": "hello"},
                  {"id": "hello", "type": "engagement", "channel": "sms", "message": {"text": "Hi"}}]}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("catalog")
    (folder / "cart.yaml").write_text(yaml.safe_dump(CART))
    return folder


def _settings(data_dir: Path, catalog: Path, address: str) -> Settings:
    return Settings(TEMPORAL_ADDRESS=address, JOURNEYS_TASK_QUEUE=QUEUE, JOURNEYS_DATA_DIR=data_dir,
                    JOURNEYS_WRITE_KEY=KEY, JOURNEYS_DIR=catalog, JOURNEYS_ROUTE_TIMEOUT=DEADLINE)


@contextmanager
def serving(settings: Settings, connect: Callable[[], Awaitable[Client]] | None = None) -> Iterator[str]:
    """The app on uvicorn in a thread of its own: its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, None, connect), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert thread.is_alive(), "the API did not start"
        threading.Event().wait(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def lazy(address: str) -> Callable[[], Awaitable[Client]]:
    """A client that connects on first use (as one whose server went away since)."""
    async def connect() -> Client:
        return await Client.connect(address, lazy=True, data_converter=data_converter)
    return connect


async def _post(url: str, path: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, auth=(KEY, ""), timeout=PATIENCE) as http:
        return await http.post(path, json=body)


async def _get(url: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=PATIENCE) as http:
        return await http.get(path)


def _retry_later(response: httpx.Response) -> list[dict[str, Any]]:
    """A 503 that asks for the request again, and says nothing of what failed inside."""
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["success"] is False
    text = response.text.lower()
    assert not any(word in text for word in ("tcp", "connect", "locked", "sqlite", "cart", "journey/"))
    return list(body["errors"])


@contextmanager
def silent_server() -> Iterator[str]:
    """A server that takes TCP connections and never answers: a hung Temporal."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("down", ["closed port", "hung server"])
async def test_temporal_down_is_503_with_retry_after_within_the_deadline(
        down: str, data_dir: Path, catalog: Path) -> None:
    with contextlib_for(down) as address, serving(_settings(data_dir, catalog, address),
                                                   lazy(address)) as url:
        item = {"userId": "ada", "event": "Added To Cart", "messageId": f"m-{down}"}
        [error] = _retry_later(await _post(url, "/v1/track", item))
        assert error == {"index": 0, "reason": "not routed: the service is unavailable, send it again"}
        # A batch: the good items ask for a retry; a bad one still says what is wrong with it.
        errors = _retry_later(await _post(url, "/v1/batch", {"batch": [
            {"type": "track", "userId": "bob", "event": "Added To Cart", "messageId": "m-b"},
            {"type": "track", "userId": "cy"},
            {"type": "identify", "userId": "dee", "traits": {"plan": "pro"}},  # no journey: routed
        ]}))
        assert [e["index"] for e in errors] == [0, 1]
        assert "name" in errors[1]["reason"] and "unavailable" not in errors[1]["reason"]
        ready = await _get(url, "/ready")
        assert ready.status_code == 503 and ready.json() == {
            "status": "not ready", "temporal": "unavailable", "store": "ok"}
        assert (await _get(url, "/health")).status_code == 200  # alive: no restart for this


@contextmanager
def contextlib_for(down: str) -> Iterator[str]:
    if down == "hung server":
        with silent_server() as address:
            yield address
    else:
        yield f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


async def test_a_store_locked_by_another_process_is_503_then_routes(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path, store: Store, worker: None) -> None:
    address = env.client.service_client.config.target_host
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(data_dir / "journeys.db")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    with serving(_settings(data_dir, catalog, address)) as url:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            item = {"userId": "locked-ada", "event": "Added To Cart", "messageId": "m-locked"}
            _retry_later(await _post(url, "/v1/track", item))
            _retry_later(await _post(url, "/v1/identify", {"userId": "locked-ada", "traits": {"a": 1}}))
            ready = await _get(url, "/ready")
            assert ready.status_code == 503 and ready.json()["store"] == "unavailable"
            assert ready.json()["temporal"] == "ok"
        finally:
            holder.communicate("\n", timeout=10)
        assert (await _get(url, "/ready")).json() == {"status": "ready", "temporal": "ok", "store": "ok"}
        response = await _post(url, "/v1/track", item)  # the client's retry
        assert response.status_code == 200, response.text
        await env.client.get_workflow_handle("journey/cart/locked-ada").result()
        runs = [w async for w in env.client.list_workflows("WorkflowId = 'journey/cart/locked-ada'")]
        assert len(runs) == 1


@asynccontextmanager
async def temporal_on(port: int) -> AsyncIterator[WorkflowEnvironment]:
    """A dev server on ``port``: Temporal coming (back) up where the API looks for it."""
    environment = await WorkflowEnvironment.start_local(
        port=port, data_converter=data_converter, dev_server_existing_path=binary("temporal"),
        search_attributes=list(SEARCH_ATTRIBUTES), ui=False, dev_server_log_level="error")
    try:
        yield environment
    finally:
        await environment.shutdown()


async def test_twenty_copies_while_temporal_is_down_then_up_enter_once(
        data_dir: Path, catalog: Path, store: Store) -> None:
    """Segment's library retries a 5xx: 20 copies of one event, sent while Temporal is down and
    again until each is answered 200. None is answered 200 before the event was routed (each
    200 is checked against Temporal at once), and the user enters once."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    item = {"userId": "twenty", "event": "Added To Cart", "messageId": "m-twenty"}
    refused = [0] * 20
    up = asyncio.Event()
    checked: list[bool] = []

    async def client(i: int, url: str) -> None:
        while True:
            response = await _post(url, "/v1/track", item)
            if response.status_code == 200:
                # Routed means Temporal has it: the journey must exist now.
                temporal = await Client.connect(address, data_converter=data_converter)
                description = await temporal.get_workflow_handle("journey/cart/twenty").describe()
                checked.append(description.id == "journey/cart/twenty")
                return
            _retry_later(response)
            refused[i] += 1
            if not up.is_set() and all(refused):
                up.set()
            await asyncio.sleep(0.2)

    with serving(_settings(data_dir, catalog, address), lazy(address)) as url:
        copies = [asyncio.create_task(client(i, url)) for i in range(20)]
        await asyncio.wait_for(up.wait(), 60)  # every copy was refused at least once
        async with temporal_on(port) as environment, running_worker(environment.client, store, QUEUE):
            await asyncio.wait_for(asyncio.gather(*copies), 120)
            await environment.client.get_workflow_handle("journey/cart/twenty").result()
            runs = [w async for w in environment.client.list_workflows(
                "WorkflowId = 'journey/cart/twenty'")]
    assert checked == [True] * 20
    assert len(runs) == 1
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(entries).where(
            entries.c.workflow_id == "journey/cart/twenty")).scalar() == 1


# --- the command line: `event` and `ingest` exit 1 and name what was not routed ----------------

def _starter(data_dir: Path, catalog: Path, address: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``starter.py ARGS``, given PATIENCE seconds per event at most (a hang fails the test),
    plus 30 s for the interpreter's start: seconds of imports on a machine busy with other tests
    (pytest-xdist)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "JOURNEYS_"))}
    environ |= {"TEMPORAL_ADDRESS": address, "JOURNEYS_DATA_DIR": str(data_dir),
                "JOURNEYS_TASK_QUEUE": QUEUE, "JOURNEYS_ROUTE_TIMEOUT": str(DEADLINE)}
    return subprocess.run([sys.executable, "starter.py", *args, "--journeys", str(catalog)],
                          cwd=ROOT, env=environ, capture_output=True, text=True, timeout=PATIENCE * 2 + 30)


@pytest.mark.parametrize("down", ["closed port", "hung server"])
def test_event_and_ingest_name_what_temporal_did_not_take(down: str, data_dir: Path,
                                                          catalog: Path) -> None:
    with contextlib_for(down) as address:
        done = _starter(data_dir, catalog, address, "event", "ada", "Added To Cart", "--id", "e-1")
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith("not routed: event e-1 of ada: "), done.stderr
        lines = data_dir.parent / "lines.ndjson"
        lines.write_text('{"userId": "ada", "event": "Added To Cart"}\n')
        done = _starter(data_dir, catalog, address, "ingest", str(lines))
        assert done.returncode == 1 and f"not routed: {lines}: no line" in done.stderr, done.stderr


def test_event_and_ingest_with_the_store_locked(env: WorkflowEnvironment, data_dir: Path,
                                                catalog: Path, store: Store) -> None:
    address = env.client.service_client.config.target_host
    lines = data_dir.parent / "locked.ndjson"
    lines.write_text("".join(json.dumps({"userId": f"lock-{i}", "event": "Added To Cart"}) + "\n"
                             for i in range(3)))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(data_dir / "journeys.db")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        done = _starter(data_dir, catalog, address, "event", "ada", "Added To Cart", "--id", "e-2")
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.splitlines() == [f"not routed: event e-2 of ada: not routed within {DEADLINE:g} s"]
        done = _starter(data_dir, catalog, address, "ingest", str(lines))
        assert done.returncode == 1, done.stderr
        named = sorted(line.split(": ")[0] for line in done.stderr.splitlines())
        assert named == [f"not routed  line {i + 1} (user 'lock-{i}', 'Added To Cart')" for i in range(3)]
        assert done.stdout.strip().endswith("refused 0, failed 3")
    finally:
        holder.communicate("\n", timeout=10)


async def test_a_copy_is_a_duplicate_only_once_the_first_was_routed(
        data_dir: Path, catalog: Path, store: Store) -> None:
    """20 copies of one event routed at once in one router, Temporal down: none is a
    "duplicate" of a copy that failed (they all fail, and may come again); once it is up, one
    enters and the others are duplicates of it."""
    port = free_port()
    ingestion = Ingestion(Router(await lazy(f"127.0.0.1:{port}")(), QUEUE, receipts=store), store,
                          catalog, deadline=DEADLINE)
    event = Event(id="m-copies", name="Added To Cart", user_id="copies", time=datetime.now(UTC))
    down = await asyncio.gather(*(ingestion.track(event) for _ in range(20)))
    assert [[(r.action, r.problem) for r in routed] for routed in down] == [
        [("failed", "unavailable")]] * 20
    async with temporal_on(port) as environment:
        up = await asyncio.gather(*(ingestion.track(event) for _ in range(20)))
        assert sorted(r.action for routed in up for r in routed) == ["duplicate"] * 19 + ["started"]
        runs = [w async for w in environment.client.list_workflows("WorkflowId = 'journey/cart/copies'")]
    assert len(runs) == 1


def _server_pid(port: int) -> int:
    """The pid of the `temporal server start-dev` serving ``port``."""
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        given = args[args.index(b"--port") + 1] if b"--port" in args else b""
        if b"start-dev" in args and given == str(port).encode():
            return int(proc.name)
    raise AssertionError(f"no dev server on port {port}")


async def test_a_temporal_that_stops_answering_mid_way_is_503_then_routes(
        data_dir: Path, catalog: Path, store: Store) -> None:
    """A connected client, then the server hangs (SIGSTOP): the calls under way wait on
    nothing; the request is answered 503 within the deadline, and routes once it answers."""
    port = free_port()
    async with temporal_on(port) as environment:
        pid = _server_pid(port)
        with serving(_settings(data_dir, catalog, f"127.0.0.1:{port}")) as url:
            item = {"userId": "stopped", "event": "Added To Cart", "messageId": "m-stopped"}
            os.kill(pid, signal.SIGSTOP)
            try:
                _retry_later(await _post(url, "/v1/track", item))
                ready = await _get(url, "/ready")
                assert ready.status_code == 503 and ready.json()["temporal"] == "unavailable"
            finally:
                os.kill(pid, signal.SIGCONT)
            response = await _post(url, "/v1/track", item)
            assert response.status_code == 200, response.text
        runs = [w async for w in environment.client.list_workflows("WorkflowId = 'journey/cart/stopped'")]
        assert len(runs) == 1


async def test_serve_started_while_temporal_is_down_answers_503_and_not_ready(
        data_dir: Path, catalog: Path) -> None:
    """`serve` does not exit when Temporal cannot be reached at its start (a pod that starts
    before its cluster): liveness 200, readiness 503, events 503 with Retry-After, so that a
    client sends them again. (A client connected lazily routes once Temporal is up: above.)"""
    port, temporal = free_port(), f"127.0.0.1:{free_port()}"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "JOURNEYS_"))}
    environ |= {"TEMPORAL_ADDRESS": temporal, "JOURNEYS_DATA_DIR": str(data_dir),
                "JOURNEYS_TASK_QUEUE": QUEUE, "JOURNEYS_WRITE_KEY": KEY,
                "JOURNEYS_ROUTE_TIMEOUT": str(DEADLINE)}
    process = subprocess.Popen([sys.executable, "starter.py", "serve", "--port", str(port),
                                "--journeys", str(catalog)], cwd=ROOT, env=environ,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                if (await _get(url, "/health")).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        assert (await _get(url, "/ready")).status_code == 503
        _retry_later(await _post(url, "/v1/track", {"userId": "early", "event": "Added To Cart"}))
    finally:
        process.terminate()
        _, err = await asyncio.to_thread(process.communicate, timeout=15)
    assert "Temporal unreachable at start" in err.decode(), err.decode()[-2000:]
