"""The load drill: many users parked in a long wait, restarts and a SIGKILL, as a user runs them.

    python -m scripts.drill [--users 20000] [--exits 1000] [--pings 1000] [--concurrency 64]

Everything runs as separate processes, as in production on one machine: ``python worker.py --dev
--no-ui`` (the worker and its embedded dev server, SQLite ``temporal.db`` in WAL mode),
``python starter.py ingest`` and ``python starter.py serve`` (the HTTP API), on a journey
catalog of one journey in a temporary folder:

    entered (action "Drill Entered") > wait-ping (action "Drill Ping" within 24h) > sms-pong
    exit_when: ["Drill Exit"]

1. ``--users`` users enter through ``starter.py ingest`` and park in the 24 h wait; the entry rate
   is users over the time from the first workflow's start to all of them counted (visibility:
   Running at JourneyNode "wait-ping"). Then the worker's and the server's RSS, the database
   bytes and the history bytes per parked journey.
2. The worker restarts (SIGTERM: it stops its dev server too; then ``worker.py --dev`` again).
3. ``--exits`` users get "Drill Exit" through the HTTP API (POST /v1/batch): all must exit, and
   nothing may be sent.
4. The dev server is killed with SIGKILL; the worker notices and exits; ``worker.py --dev`` again
   on the same data dir: every user not exited must still be parked (counted through visibility).
5. ``--pings`` of them get "Drill Ping" through the same HTTP API process: exactly one message each.

It prints the figures and the machine, and exits 1 if a check fails (2 if the drill itself broke
down: a process that would not start, a wait that timed out). Not part of ``make test``
(``make drill``; ``tests/test_drill.py`` runs it small).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from temporalio.client import Client

from journeys.events import workflow_id
from scripts.bench_measure import machine, rss_mib
from scripts.common import proc_stat, run_script
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


class DrillError(RuntimeError):
    """The drill could not go on (not a failed check): a process did not start, a wait timed out."""


def user(i: int) -> str:
    return f"drill-{i:06d}"


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def cpu_seconds(pid: int) -> float:
    try:
        fields = proc_stat(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for worker in self.workers:
            worker.kill()
        for pid in temporal_servers(self.data_dir):  # a server a killed worker left (ours)
            os.kill(pid, signal.SIGKILL)

    # --- Temporal --------------------------------------------------------------------------

    async def count(self, query: str) -> int:
        assert self.client is not None
        return (await self.client.count_workflows(query)).count

    async def until(self, what: str, check: Callable[[], Awaitable[bool]], timeout: float) -> float:
        """Poll ``check`` every 0.2 s; seconds until it held. DrillError after ``timeout``."""
        started = time.monotonic()
        while not await check():
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


# --- the steps -----------------------------------------------------------------------------

async def enter(drill: Drill, report: Report, users: list[str]) -> None:
    """Every user enters through ``starter.py ingest`` and parks in the 24 h wait."""
    n = len(users)
    events = drill.tmp / "entries.jsonl"
    with events.open("w") as out:
        for u in users:
            out.write(f'{{"user_id": "{u}", "name": "{ENTER}", "properties": {{}}, "id": "enter-{u}"}}\n')
    worker, server = drill.worker.process.pid, drill.server_pid()
    cpu0 = cpu_seconds(worker), cpu_seconds(server), children_cpu()
    db0 = files_bytes(drill.data_dir, "temporal.db") + files_bytes(drill.data_dir, "journeys.db")
    started = time.time()
    ingest = drill.starter("ingest", "ingest", str(events), "--concurrency", str(drill.args.concurrency),
                           "--journeys", str(drill.catalog))
    peak = {"worker": 0.0, "server": 0.0}
    ingested: list[float] = []

    async def parked() -> bool:
        peak["worker"] = max(peak["worker"], rss_mib(worker))
        peak["server"] = max(peak["server"], rss_mib(server))
        if ingest.poll() is None:
            return False
        if not ingested:
            ingested.append(time.time() - started)
            if ingest.returncode != 0:
                raise DrillError(f"starter.py ingest exited with {ingest.returncode}:\n"
                                 f"{drill.output('ingest')}")
        return await drill.count(PARKED) >= n

    await drill.until(f"{n} users parked", parked, timeout=60 + n / 5)
    done = time.time()
    assert drill.client is not None
    first = (await drill.client.get_workflow_handle(workflow_id(JOURNEY_ID, users[0])).describe()).start_time
    first_start = first.timestamp() if first else started
    seconds = done - first_start
    report.say("entry", f"{n} users parked in {seconds:.1f} s: {n / seconds:.1f} users/s "
                        f"(starter.py ingest --concurrency {drill.args.concurrency}, returned after "
                        f"{ingested[0]:.1f} s: {drill.output('ingest').splitlines()[-1]})")
    worker_cpu, server_cpu = cpu_seconds(worker) - cpu0[0], cpu_seconds(server) - cpu0[1]
    ingest_cpu = children_cpu() - cpu0[2]  # the one child reaped meanwhile
    report.say("cpu", f"during entry: server {server_cpu:.0f} s, worker {worker_cpu:.0f} s, ingest "
                      f"{ingest_cpu:.0f} s: {1000 * server_cpu / n:.1f}, {1000 * worker_cpu / n:.1f} and "
                      f"{1000 * ingest_cpu / n:.1f} ms a user")
    report.say("memory", f"after entry: worker RSS {rss_mib(worker):.0f} MiB, server RSS "
                         f"{rss_mib(server):.0f} MiB (peaks during entry {peak['worker']:.0f} and "
                         f"{peak['server']:.0f} MiB)")
    temporal = files_bytes(drill.data_dir, "temporal.db")
    wal = files_bytes(drill.data_dir, "temporal.db-wal")
    journeys = files_bytes(drill.data_dir, "journeys.db")
    report.say("database", f"temporal.db {mib(temporal - wal)} + WAL {mib(wal)}, journeys.db (+ WAL) "
                           f"{mib(journeys)}: {(temporal + journeys - db0) / n / 1024:.1f} KiB per parked "
                           f"journey (growth of all of them over the empty databases)")
    sample = random.Random(8).sample(users, min(50, n))
    proto, text, count = await drill.history_bytes(sample)
    report.say("history", f"{proto / 1024:.2f} KiB per parked journey as protobuf ({text / 1024:.1f} KiB "
                          f"as JSON, {count:.0f} events; mean of {len(sample)} histories)")


async def restart_worker(drill: Drill, report: Report) -> None:
    """SIGTERM (the worker stops its dev server too), then ``worker.py --dev`` again."""
    started = time.monotonic()
    status = await drill.worker.stop(signal.SIGTERM, timeout=60)
    stopped = time.monotonic() - started
    ready = await drill.start_worker()
    report.say("restart", f"worker SIGTERM: stopped (status {status}, its dev server with it) in "
                          f"{stopped:.1f} s; worker.py --dev again: serving in {ready:.1f} s")


async def exits(drill: Drill, report: Report, url: str, exiting: list[str], staying: int) -> None:
    posted = await drill.post_events(url, EXIT, exiting)

    async def exited() -> bool:
        return await drill.count(CLOSED) >= len(exiting)

    seconds = await drill.until(f"{len(exiting)} exits", exited, timeout=60 + len(exiting) / 5)
    await asyncio.sleep(2)  # anything that would be sent has had time to be
    closed, running, sent = await drill.count(CLOSED), await drill.count(PARKED), drill.outbox()
    gone = await asyncio.gather(*(drill.count(f'{CLOSED} AND UserId="{u}"') for u in exiting[:20]))
    report.say("exits", f"{len(exiting)} '{EXIT}' events over HTTP in {posted:.1f} s; all closed "
                        f"{seconds:.1f} s later")
    ok = closed == len(exiting) and running == staying and sum(gone) == len(gone) and not sent
    report.check("exits", ok, f"{closed}/{len(exiting)} exited, {len(sent)} sent, {running} still parked")


async def kill_server(drill: Drill, report: Report, staying: int) -> None:
    """SIGKILL the dev server; the worker should notice and exit; ``worker.py --dev`` again."""
    pid = drill.server_pid()
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    deadline = started + 60
    while drill.worker.process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    status = drill.worker.process.poll()
    if status is None:
        report.say("kill", "the worker was still running 60 s after its dev server's SIGKILL: stopping it")
        drill.worker.kill()
    noticed = time.monotonic() - started
    ready = await drill.start_worker()
    report.say("kill", f"dev server SIGKILL: the worker exited (status {status}) {noticed:.1f} s later; "
                       f"worker.py --dev again on the same temporal.db: serving in {ready:.1f} s")
    report.check("worker exits when its server dies", status is not None, f"status {status}")
    parked = await drill.count(PARKED)
    report.check("parked after SIGKILL", parked == staying, f"{parked}/{staying} (visibility)")


async def pings(drill: Drill, report: Report, url: str, pinged: list[str]) -> None:
    posted = await drill.post_events(url, PING, pinged)

    async def sent() -> bool:
        return len(drill.outbox()) >= len(pinged)

    seconds = await drill.until(f"{len(pinged)} messages", sent, timeout=60 + len(pinged) / 5)
    await asyncio.sleep(2)  # a duplicate would be in by now
    rows = drill.outbox()
    users = {u for u, _ in rows}
    statuses = sorted({s for _, s in rows})
    report.say("pings", f"{len(pinged)} '{PING}' events over HTTP (the same serve process) in "
                        f"{posted:.1f} s; {len(pinged)} messages {seconds:.1f} s later")
    report.check("pings", len(rows) == len(pinged) and users == set(pinged) and statuses == ["delivered"],
                 f"{len(rows)} sent for {len(pinged)} pings, {len(users)} users, each pinged one once "
                 f"(status {', '.join(statuses) or '-'})")


async def main(args: argparse.Namespace) -> int:
    if not 0 < args.exits + args.pings <= args.users:
        print("error: exits + pings must be at most users", file=sys.stderr)
        return 2
    started = time.monotonic()
    report = Report()
    print(f"load drill: {args.users} users, {args.exits} exits, {args.pings} pings")
    print(machine(), flush=True)
    users = [user(i) for i in range(args.users)]
    exiting, pinged = users[:args.exits], users[args.exits:args.exits + args.pings]
    staying = args.users - args.exits
    with (tempfile.TemporaryDirectory(prefix="journeys-drill-") as name,
          running(Path(name), args, report) as drill):
        try:
            ready = await drill.start_worker()
            report.say("start", f"worker.py --dev --no-ui serving in {ready:.1f} s")
            await enter(drill, report, users)
            await restart_worker(drill, report)
            url = await drill.serve()
            await exits(drill, report, url, exiting, staying)
            await kill_server(drill, report, staying)
            await pings(drill, report, url, pinged)
            status = await drill.worker.stop(signal.SIGTERM, timeout=60)
            report.check("worker stops cleanly", status == 0, f"status {status}")
        except DrillError as exc:
            print(f"error: {exc}", file=sys.stderr)
            for log in sorted(drill.tmp.glob("*.err")):
                print(f"--- {log.name} (tail)\n{log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
            return 2
    report.say("total", f"wall time {time.monotonic() - started:.0f} s")
    if report.failed:
        print(f"FAILED: {', '.join(report.failed)}")
        return 1
    print("all checks passed")
    return 0


@contextmanager
def running(tmp: Path, args: argparse.Namespace, report: Report) -> Iterator[Drill]:
    drill = Drill(tmp, args, report)
    try:
        yield drill
    finally:
        drill.close()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.drill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20000, help="users who enter and park (default 20000)")
    parser.add_argument("--exits", type=int, default=1000, help="of them, users who exit (default 1000)")
    parser.add_argument("--pings", type=int, default=1000, help="of the others, users pinged (default 1000)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="starter.py ingest --concurrency (default 64)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run_script(main(parse_args()))
