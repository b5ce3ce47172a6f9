"""A router killed at any moment loses no event (issue 15, case 2, and the funnel's entries):
``starter.py serve`` killed mid-batch and ``starter.py ingest`` killed mid-file (SIGKILL of the
real processes), then the same events sent again at once: each enters exactly once, in
Temporal and in the store's ``entries``. The journey ends right after its sms and lets a user
in again after it ended, so an event routed twice would show as a second run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from ingestion.router import Router
from journeys.events import Event
from journeys.funnel.stats import journey_stats
from journeys.language.loader import load_file
from journeys.store.database import Store
from journeys.store.tables import entries, event_receipts
from tests.helpers.support import ROOT, dev_server, eventually, free_port, run_cli

QUEUE = "journeys-killed"
KEY = "killed-key"
CART = {"id": "cart", "name": "cart", "entry": "entered", "reentry": "after_exit",
        "nodes": [{"id": "entered", "type": "action", "event": "Added To Cart", "next": "hello"},
                  {"id": "hello", "type": "engagement", "channel": "sms", "message": {"text": "Hi"}}]}
PER_CART = {"id": "per-cart", "name": "per-cart", "entry": "entered", "entry_key": "cart_id",
            "events": {"Cart Opened": {"properties": ["cart_id"]}},
            "nodes": [{"id": "entered", "type": "action", "event": "Cart Opened", "next": "wait"},
                      {"id": "wait", "type": "delay", "duration": "1d"}]}


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("catalog")
    for journey in (CART, PER_CART):
        (folder / f"{journey['id']}.yaml").write_text(yaml.safe_dump(journey))
    return folder


def _environ(env: WorkflowEnvironment, data_dir: Path, catalog: Path) -> dict[str, str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "JOURNEYS_"))}
    # A deadline of 50 s, not 10: hundreds of events routed at once on a machine busy with other
    # tests (pytest-xdist) can take longer, and this is about kills, not the deadline (the
    # clients here wait 60 s).
    return variables | {"TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                        "JOURNEYS_DATA_DIR": str(data_dir), "JOURNEYS_TASK_QUEUE": QUEUE,
                        "JOURNEYS_WRITE_KEY": KEY, "JOURNEYS_DIR": str(catalog),
                        "JOURNEYS_ROUTE_TIMEOUT": "50"}


@contextlib.contextmanager
def starter(environ: dict[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``python starter.py ARGS`` as a process of its own (stderr in ``log``); killed at the end."""
    with log.open("ab") as err:
        process = subprocess.Popen([sys.executable, "starter.py", *args], cwd=ROOT, env=environ,
                                   stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(15)


async def _serving(process: subprocess.Popen[bytes], url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        for _ in range(600):
            assert process.poll() is None, "serve exited"
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/health")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError("serve did not start")


def _entered(store: Store, prefix: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(entries).where(
            entries.c.workflow_id.startswith(prefix))).scalar_one())


async def _kill_once_some_entered(process: subprocess.Popen[bytes], store: Store, prefix: str) -> int:
    """SIGKILL ``process`` as soon as an entry of ``prefix`` is recorded: how many were then."""
    while (entered := _entered(store, prefix)) == 0:
        assert process.poll() is None, "it ended before anything entered"
        await asyncio.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(process.wait, 15)
    return entered


async def _each_entered_once(env: WorkflowEnvironment, store: Store, prefix: str, count: int) -> None:
    """Every user entered once: one run each in Temporal (visibility, once it caught up; every
    run ended, so no start is still on its way) and one entry each in the store."""
    query = f"WorkflowId STARTS_WITH '{prefix}'"

    async def all_visible_and_closed() -> bool:
        total = (await env.client.count_workflows(query)).count
        running = (await env.client.count_workflows(f"{query} AND ExecutionStatus = 'Running'")).count
        return total >= count and running == 0

    assert await eventually(all_visible_and_closed, timeout=120)
    runs = Counter([w.id async for w in env.client.list_workflows(query)])
    assert len(runs) == count and set(runs.values()) == {1}, runs.most_common(3)
    assert _entered(store, prefix) == count


async def test_serve_killed_mid_batch_then_the_batch_again(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path, store: Store, worker: None) -> None:
    environ, log = _environ(env, data_dir, catalog), data_dir.parent / "serve.err"
    batch = {"batch": [{"type": "track", "userId": f"b{i}", "event": "Added To Cart",
                        "messageId": f"m-batch-{i}"} for i in range(600)]}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with starter(environ, log, "serve", "--port", str(port)) as serve:
        await _serving(serve, url)
        async with httpx.AsyncClient(base_url=url, auth=(KEY, ""), timeout=60) as http:
            sent = asyncio.create_task(http.post("/v1/batch", json=batch))
            at_kill = await _kill_once_some_entered(serve, store, "journey/cart/b")
            with contextlib.suppress(httpx.TransportError):
                await sent
    assert at_kill < 600  # killed mid-batch
    with starter(environ, log, "serve", "--port", str(port)) as serve:  # the client sends it again
        await _serving(serve, url)
        async with httpx.AsyncClient(base_url=url, auth=(KEY, ""), timeout=60) as http:
            response = await http.post("/v1/batch", json=batch)
            assert response.status_code == 200, response.text
            # serve logs a routing failure as a JSON line (its log had no handler before).
            refused = await http.post("/v1/track", json={"userId": "no-key", "event": "Cart Opened"})
            assert refused.status_code == 400
    await _each_entered_once(env, store, "journey/cart/b", 600)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    [failed] = [line for line in lines if line.get("event") == "event not routed"]
    assert (failed["journey_id"], failed["user_id"], failed["level"]) == ("per-cart", "no-key", "warning")


async def test_ingest_killed_mid_file_then_the_file_again(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path, store: Store, worker: None) -> None:
    environ = _environ(env, data_dir, catalog)
    file = data_dir.parent / "events.ndjson"
    file.write_text("".join(json.dumps({"userId": f"f{i}", "event": "Added To Cart"}) + "\n"
                            for i in range(1000)))  # no ids: each line's comes from its content
    with starter(environ, data_dir.parent / "ingest.err", "ingest", str(file)) as ingest:
        at_kill = await _kill_once_some_entered(ingest, store, "journey/cart/f")
    assert at_kill < 1000
    again = await asyncio.to_thread(run_cli, env, data_dir, QUEUE, "ingest", str(file),
                                    "--journeys", str(catalog))
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("read 1000, "), again.stdout
    await _each_entered_once(env, store, "journey/cart/f", 1000)


#: A router that dies between Temporal's answer and the store's record of the entry.
DIES_BEFORE_ITS_RECORD = textwrap.dedent("""
    import asyncio, os, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from ingestion.router import Router
    from journeys.events import Event
    from journeys.language.loader import load_file
    from journeys.store.database import Store
    from service.runtime import connect

    async def main(address, url, journey_file, queue, user):
        store = Store(url)
        store.record_entry = lambda *args, **kwargs: os._exit(9)  # killed right there
        router = Router(await connect(address), queue, receipts=store)
        event = Event(id="m-died", name="Added To Cart", user_id=user, time=datetime.now(UTC))
        await router.route_event([load_file(Path(journey_file)).journey], event)

    asyncio.run(main(*sys.argv[1:]))
""")


@pytest.mark.parametrize("newer", [False, True], ids=["latest-run", "entered-again-since"])
async def test_an_entry_whose_router_died_before_recording_it_is_counted_once(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path, store: Store, worker: None,
        newer: bool) -> None:
    """The funnel's entries do not depend on the router living from the start to its record:
    `stats` counts the entry once its journey has ended, and the copy a client sends again
    finds the run the event entered (ended by now), records it, and starts nothing: counted
    once. Also when another event entered the user again since (reentry: after_exit): the run
    the copy's event entered is no longer the latest."""
    user = f"died-{uuid.uuid4().hex[:6]}"
    journey = load_file(catalog / "cart.yaml").journey
    assert journey is not None
    counted = journey_stats(store, journey).entered  # what `stats` says
    address = env.client.service_client.config.target_host
    died = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-c", DIES_BEFORE_ITS_RECORD, address, f"sqlite:///{data_dir / 'journeys.db'}",
        str(catalog / "cart.yaml"), QUEUE, user], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert died.returncode == 9, died.stderr
    wid = f"journey/cart/{user}"
    await env.client.get_workflow_handle(wid).result()  # it entered, and its journey ended
    with store.engine.connect() as conn:  # its claim was never settled
        [state] = conn.execute(select(event_receipts.c.state).where(
            event_receipts.c.event_id == "m-died", event_receipts.c.user_id == user)).scalars()
    assert _entered(store, wid) == 0 and state != "done"
    # Not sent again (yet): `stats` counts it all the same, from the end its journey recorded.
    assert journey_stats(store, journey).entered == counted + 1
    router = Router(env.client, QUEUE, receipts=store)
    if newer:  # another event enters the user again, and that journey ends too
        later = Event(id="m-later", name="Added To Cart", user_id=user, time=datetime.now(UTC))
        [entered] = await router.route_event([journey], later)
        assert entered.action == "started"
        await env.client.get_workflow_handle(wid).result()
        assert await eventually(lambda: _runs(env, wid, 2), timeout=30)
    event = Event(id="m-died", name="Added To Cart", user_id=user, time=datetime.now(UTC))
    [again] = await router.route_event([journey], event)
    assert (again.workflow_id, again.action) == (wid, "started")
    [third] = await router.route_event([journey], event)
    assert third.action == "duplicate"
    if newer:
        await asyncio.sleep(1)  # a third run would be visible by now
        assert await _runs(env, wid, 2) and _entered(store, wid) == 2
        assert journey_stats(store, journey).entered == counted + 2
        return
    assert _entered(store, wid) == 1
    await _each_entered_once(env, store, wid, 1)
    assert journey_stats(store, journey).entered == counted + 1


async def _runs(env: WorkflowEnvironment, wid: str, count: int) -> bool:
    """Does visibility count exactly ``count`` runs of ``wid``?"""
    return (await env.client.count_workflows(f"WorkflowId = '{wid}'")).count == count
