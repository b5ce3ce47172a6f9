"""The load drill's parts (``scripts/drill.py`` runs the steps): its journey, the processes of one
drill (``worker.py --dev``, ``starter.py ingest`` and ``serve``) with the Temporal queries and the
HTTP calls the steps make, and the report it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from temporalio.client import Client

from journeys.events import workflow_id
from scripts.common import wait_or_kill
from tests.helpers.processes import TASK_QUEUE, WorkerProcess, temporal_servers
from tests.helpers.support import ROOT, free_port

JOURNEY_ID, WAIT_NODE, SEND_NODE = "drill", "wait-ping", "sms-pong"
ENTER, PING, EXIT = "Drill Entered", "Drill Ping", "Drill Exit"
JOURNEY = f"""\
# The load drill's journey (scripts/drill.py): users enter, then park in a 24 h wait.
id: {JOURNEY_ID}
name: Load drill
entry: entered
exit_when: [{EXIT}]
nodes:
  - id: entered
    type: action
    event: {ENTER}
    next: {WAIT_NODE}
  - id: {WAIT_NODE}
    type: action
    event: {PING}
    within: 24h
    next: {SEND_NODE}
  - id: {SEND_NODE}
    type: engagement
    channel: sms
    message:
      text: "Pong, {{{{ profile.first_name | default('friend') }}}}"
"""
PARKED = f'JourneyId="{JOURNEY_ID}" AND ExecutionStatus="Running" AND JourneyNode="{WAIT_NODE}"'
CLOSED = f'JourneyId="{JOURNEY_ID}" AND ExecutionStatus!="Running"'
BATCH = 100  # track items per POST /v1/batch (about 14 KB, far below the 500 KB limit)


#: Seconds between the lines a long phase prints while it waits.
PROGRESS_EVERY = 10.0

class DrillError(RuntimeError):
    """The drill could not go on (not a failed check): a process did not start, a wait timed out."""


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def children_cpu() -> float:
    """CPU seconds of the child processes reaped so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def files_bytes(folder: Path, name: str) -> int:
    """``name`` and its SQLite companions (``-wal``, ``-shm``)."""
    return sum(p.stat().st_size for p in folder.glob(f"{name}*") if p.is_file())


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def say(self, label: str, text: str) -> None:
        line = f"{label:<9} {text}"
        self.lines.append(line)
        print(line, flush=True)

    def check(self, label: str, ok: bool, text: str) -> None:
        self.say("check", f"{label}: {text}  {'ok' if ok else 'FAILED'}")
        if not ok:
            self.failed.append(label)


class Drill:
    """The processes of one drill, in one temporary directory; ``close`` ends what is left."""

    def __init__(self, tmp: Path, args: argparse.Namespace, report: Report) -> None:
        self.tmp, self.args, self.report = tmp, args, report
        self.data_dir, self.catalog = tmp / "data", tmp / "journeys"
        self.catalog.mkdir()
        (self.catalog / f"{JOURNEY_ID}.yaml").write_text(JOURNEY)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "JOURNEYS_"))}
        self.env |= {"TEMPORAL_ADDRESS": self.address, "TEMPORAL_NAMESPACE": "default",
                     "JOURNEYS_DATA_DIR": str(self.data_dir), "JOURNEYS_TASK_QUEUE": TASK_QUEUE,
                     "JOURNEYS_DATABASE_URL": f"sqlite:///{self.data_dir / 'journeys.db'}",
                     "JOURNEYS_DIR": str(self.catalog)}
        self.workers: list[WorkerProcess] = []
        self.others: list[subprocess.Popen[bytes]] = []
        self.client: Client | None = None

    # --- processes -------------------------------------------------------------------------

    async def start_worker(self) -> float:
        """``worker.py --dev --no-ui`` on the drill's data dir; seconds until it serves."""
        started = time.monotonic()
        worker = WorkerProcess(self.data_dir, self.port, f"worker-{len(self.workers) + 1}",
                               overrides={"JOURNEYS_DIR": str(self.catalog)})
        self.workers.append(worker)
        try:
            self.client = await worker.ready(timeout=120)
        except AssertionError as exc:
            raise DrillError(str(exc)) from None
        return time.monotonic() - started

    @property
    def worker(self) -> WorkerProcess:
        return self.workers[-1]

    def server_pid(self) -> int:
        pids = temporal_servers(self.data_dir)
        if len(pids) != 1:
            raise DrillError(f"expected one dev server on {self.data_dir}, found {pids}")
        return pids[0]

    def starter(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """``python starter.py ARGS`` with the drill's settings, its output in files."""
        with (self.tmp / f"{name}.out").open("wb") as out, (self.tmp / f"{name}.err").open("wb") as err:
            process = subprocess.Popen([sys.executable, "starter.py", *args], cwd=ROOT, env=self.env,
                                       stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.others.append(process)
        return process

    def output(self, name: str) -> str:
        return "\n".join((self.tmp / f"{name}.{kind}").read_text(errors="replace").strip()
                         for kind in ("out", "err") if (self.tmp / f"{name}.{kind}").exists())

    def close(self) -> None:
        for process in self.others:
            if process.poll() is None:
                process.terminate()
                wait_or_kill(process, 10)
        for worker in self.workers:
            worker.kill()
        for pid in temporal_servers(self.data_dir):  # a server a killed worker left (ours)
            os.kill(pid, signal.SIGKILL)

    # --- Temporal --------------------------------------------------------------------------

    async def count(self, query: str) -> int:
        assert self.client is not None
        return (await self.client.count_workflows(query)).count

    async def until(self, what: str, check: Callable[[], Awaitable[bool]], timeout: float,
                    progress: Callable[[], Awaitable[str]] | None = None) -> float:
        """Poll ``check`` every 0.2 s; seconds until it held. DrillError after ``timeout``. A
        line every ``PROGRESS_EVERY`` seconds meanwhile (with ``progress``'s words), so that a
        long phase is seen to move."""
        started = shown = time.monotonic()
        while not await check():
            if time.monotonic() - shown >= PROGRESS_EVERY:
                shown = time.monotonic()
                so_far = f": {await progress()}" if progress else ""
                print(f"  ...       {what}, {shown - started:.0f} s in{so_far}", flush=True)
            if time.monotonic() - started > timeout:
                raise DrillError(f"timed out after {timeout:.0f} s waiting for {what}")
            if self.worker.process.poll() is not None:
                raise DrillError(f"the worker exited while waiting for {what}:\n"
                                 f"{self.worker.output()[-3000:]}")
            await asyncio.sleep(0.2)
        return time.monotonic() - started

    async def history_bytes(self, users: Sequence[str]) -> tuple[float, float, float]:
        """Mean protobuf bytes, JSON bytes and events of these users' histories."""
        assert self.client is not None
        proto = text = events = 0
        for u in users:
            history = await self.client.get_workflow_handle(workflow_id(JOURNEY_ID, u)).fetch_history()
            proto += sum(e.ByteSize() for e in history.events)
            text += len(history.to_json().encode())
            events += len(history.events)
        n = max(1, len(users))
        return proto / n, text / n, events / n

    def outbox(self) -> list[tuple[str, str]]:
        """(user, status) of every outbox row of the drill's journey."""
        with sqlite3.connect(f"file:{self.data_dir / 'journeys.db'}?mode=ro", uri=True) as db:
            return list(db.execute("SELECT user_id, status FROM outbox WHERE journey_id = ?", (JOURNEY_ID,)))

    # --- HTTP API --------------------------------------------------------------------------

    async def serve(self) -> str:
        port = free_port()
        process = self.starter("serve", "serve", "--port", str(port), "--journeys", str(self.catalog))
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise DrillError(f"starter.py serve exited with {process.returncode}:\n"
                                     f"{self.output('serve')}")
                try:
                    if (await http.get(f"{url}/health")).status_code == 200:
                        return url
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        raise DrillError(f"starter.py serve did not answer in 60 s:\n{self.output('serve')}")

    async def post_events(self, url: str, event: str, users: Sequence[str]) -> float:
        """``event`` for each user through POST /v1/batch, 4 requests in flight; seconds taken."""
        batches = [users[i:i + BATCH] for i in range(0, len(users), BATCH)]
        gate = asyncio.Semaphore(4)
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            async def post(batch: Sequence[str]) -> None:
                body = {"batch": [{"type": "track", "userId": u, "event": event, "properties": {},
                                   "messageId": f"{event}-{u}"} for u in batch]}
                async with gate:
                    response = await http.post("/v1/batch", json=body)
                if response.status_code != 200:
                    raise DrillError(f"POST /v1/batch: {response.status_code} {response.text[:2000]}")
            await asyncio.gather(*(post(b) for b in batches))
        return time.monotonic() - started


@contextmanager
def running(tmp: Path, args: argparse.Namespace, report: Report) -> Iterator[Drill]:
    drill = Drill(tmp, args, report)
    try:
        yield drill
    finally:
        drill.close()
