"""The ingestion benchmark's setting: the catalog and the events, the worker process, the HTTP API.

The worker process runs the journey worker and the bare one (``python -m scripts.bench_ingest
--worker ADDRESS STORE_URL``), apart from the bench, as production runs the worker apart from
``ingest`` and ``serve``; the HTTP API is ``starter.py serve``'s app on uvicorn, in a thread of the
bench's process.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from ingestion.http_api import create_app
from journeys.settings import Settings
from journeys.store.database import Store
from journeys.validation.catalog import catalog
from scripts.bench_ingest_workflows import BareEvent, BareParkWorkflow, BareSendWorkflow, BareUser
from scripts.bench_measure import server_pids
from scripts.bench_setup import bare_worker, production_logs
from scripts.common import cpu_seconds, parent_gone, wait_or_kill
from service.runtime import connect
from tests.helpers.support import ROOT, free_port, running_worker

JOURNEY_QUEUE = "bench-ingest-journeys"
BARE_QUEUE = "bench-ingest-bare"
PARK, PING = "ingest-park", "ingest-ping"
ENTERED, SECOND, PINGED = "Bench Entered", "Bench Second", "Bench Ping"
WRITE_KEY = "bench-ingest-write-key"
PROPERTIES = {"product_name": "iPhone 14", "price": 799, "sku": "IPHONE-14-128",
              "product_url": "https://shop.example/p/iphone-14"}


# --- the catalog ------------------------------------------------------------------------------

def journey_docs() -> list[dict[str, Any]]:
    park = {"id": PARK, "name": "Ingest bench: enter and park", "entry": "entered",
            "reentry": "after_exit",
            "nodes": [{"id": "entered", "type": "action", "event": ENTERED, "next": "parked"},
                      {"id": "parked", "type": "action", "event": SECOND, "within": "12h"}]}
    ping = {"id": PING, "name": "Ingest bench: enter and send", "entry": "entered",
            "reentry": "after_exit",
            "nodes": [{"id": "entered", "type": "action", "event": PINGED, "next": "ping"},
                      {"id": "ping", "type": "engagement", "channel": "sms",
                       "message": {"text": "{{ event.product_name }} is waiting for you"}}]}
    return [park, ping]


def write_catalog(folder: Path) -> Path:
    folder.mkdir()
    for doc in journey_docs():
        (folder / f"{doc['id']}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    found = catalog(folder)
    if found.broken or len(found.journeys) != 2:
        raise SystemExit(f"the benchmark's catalog does not load: {found.warning()}")
    return folder


def lines_for(users: Sequence[str], event: str) -> list[str]:
    """One JSON line per user, in Segment's field names (as ``ingest`` and ``/v1/batch`` read)."""
    return [json.dumps({"userId": u, "event": event, "messageId": f"{u}-1", "properties": PROPERTIES})
            for u in users]


async def start_bare(client: Client, workflow: type[BareParkWorkflow | BareSendWorkflow], text: str) -> None:
    """What a hand-written app does with a line: ``json.loads``, then signal-with-start."""
    raw = json.loads(text)
    event = BareEvent(id=raw["messageId"], name=raw["event"], user_id=raw["userId"],
                      properties=raw["properties"])
    await client.start_workflow(
        workflow.run, BareUser(user_id=event.user_id), id=f"bare/{event.user_id}",
        task_queue=BARE_QUEUE, start_signal="event", start_signal_args=[event],
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)


# --- the worker process (python -m scripts.bench_ingest --worker ADDRESS STORE_URL) -------------

async def serve_worker(address: str, store_url: str) -> None:
    client = await connect(address)
    store = Store(store_url)
    with open(os.devnull, "w") as sink:
        production_logs(sink)
        async with running_worker(client, store, JOURNEY_QUEUE), \
                bare_worker(client, store, BARE_QUEUE, [BareParkWorkflow, BareSendWorkflow]):
            print("ready", flush=True)
            await parent_gone()  # stdin: a pipe from the bench, closed when it goes


class WorkerProcess:
    """The two workers in a process of their own; its CPU from /proc."""

    def __init__(self, address: str, store_url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scripts.bench_ingest", "--worker", address, store_url],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError("the worker process did not start")

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.stdin:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        wait_or_kill(self.process, 20)


def servers(exclude: int) -> list[int]:
    """The dev server: this process's children but the worker process."""
    return [p for p in server_pids() if p != exclude]


# --- the HTTP API on uvicorn, in a thread -------------------------------------------------------

@contextlib.contextmanager
def http_api(address: str, store_url: str, folder: Path, tmp: Path) -> Iterator[str]:
    settings = Settings(_env_file=None, TEMPORAL_ADDRESS=address, JOURNEYS_TASK_QUEUE=JOURNEY_QUEUE,
                        JOURNEYS_DATA_DIR=tmp, JOURNEYS_DATABASE_URL=store_url,
                        JOURNEYS_WRITE_KEY=WRITE_KEY, JOURNEYS_DIR=folder)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True, name="bench-uvicorn")
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):  # until it answers
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            if not thread.is_alive():
                raise RuntimeError("the HTTP API did not start")
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)

