"""The audience drill: a broadcast to a large segment, as a user runs it, with a SIGKILL mid-run.

    python -m scripts.drill_audience [--profiles 100000] [--active-days 12] [--rate 200]
                                     [--delay SECONDS] [--database sqlite|postgresql|both] [--pings 2]
                                     [--no-compare | --compare-only] [--count-only]

Per database (SQLite in the data dir; PostgreSQL at JOURNEYS_TEST_POSTGRES_URL or
scripts/ci/postgres.sh):

1. ``--profiles`` profiles, each with a year of behaviour counts (``--active-days`` random days,
   one to three "Viewed Product" a day, some "Charged"); the even users viewed twice in the last
   30 days, 1 in 20 of them also bought: the segment (plan not pro, viewed 2+ in 30 days, bought
   nothing in 30 days) holds about 47.5 % of them. Bytes of behaviour per user and per active day.
2. ``starter.py audience broadcast --count``: how many match, and the query's time.
3. ``worker.py --dev`` (the worker, its dev server, the schedules), ``JOURNEYS_AUDIENCE_RATE=--rate``,
   ``JOURNEYS_AUDIENCE_DELAY=--delay`` (0: the fixed rate, no adapting).
   An event-triggered journey ("Ping" > push) gets ``--pings`` events a second for ``--idle`` s (60) while
   idle: its event-to-first-send latency (the outbox row's time - the event's).
4. ``starter.py audience broadcast --trigger``: the occurrence enters the segment's users; pings go
   on meanwhile. Halfway the worker is SIGKILLed and started again. Checks: every user of the
   segment entered exactly once (nobody twice, nobody missed). Start rate, worker and server CPU
   per started user, the pings' p50/p99 during the broadcast against idle. ``--compare-only``
   skips this one.
5. Unless ``--no-compare``: the same broadcast twice more (``reentry: after_exit``), without a
   kill: with priority, then with ``JOURNEYS_TASK_PRIORITY=false``; the pings' p99 of each
   against the idle p99.

Not part of ``make test`` (``make drill-audience``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from temporalio.client import ScheduleDescription, WorkflowExecutionStatus
from temporalio.service import RPCError

from activities.models import AudienceCounts
from ingestion.audiences import schedule_id
from ingestion.pipeline import Ingestion
from ingestion.router import Router
from journeys.audience import segment
from journeys.events import Event
from journeys.language.models import SegmentNode
from journeys.settings import Settings
from journeys.store.database import Store
from journeys.store.tables import entries, outbox
from journeys.validation.catalog import catalog
from scripts.bench_measure import machine
from scripts.common import cpu_seconds, run_script, script_parser
from scripts.drill_audience_data import BROADCAST, CATALOG, JOURNEYS, PING_JOURNEY, behaviour_bytes, seed
from tests.helpers.processes import TASK_QUEUE, WorkerProcess, temporal_servers
from tests.helpers.support import ROOT, free_port
from workflows.audience import AudienceWorkflow


def say(label: str, line: str) -> None:
    print(f"{label:<9} {line}", flush=True)


class Run:
    """One database's drill: its data dir, store, worker processes and the pings' ingestion."""

    def __init__(self, tmp: Path, url: str | None, args: argparse.Namespace) -> None:
        self.tmp, self.args = tmp, args
        self.data_dir, self.folder = tmp / "data", tmp / "journeys"
        self.data_dir.mkdir()
        self.folder.mkdir()
        (self.folder / "event-catalog.yaml").write_text(CATALOG)
        for name, body in JOURNEYS.items():
            (self.folder / f"{name}.yaml").write_text(body)
        self.url = url or f"sqlite:///{self.data_dir / 'journeys.db'}"
        self.store = Store(self.url)
        self.port = free_port()
        self.workers: list[WorkerProcess] = []
        self.cpu: dict[int, float] = {}  # last CPU seconds seen per worker and server pid

    def env(self, priority: bool) -> dict[str, str]:
        return {"JOURNEYS_DIR": str(self.folder), "JOURNEYS_DATABASE_URL": self.url,
                "JOURNEYS_AUDIENCE_RATE": str(self.args.rate),
                "JOURNEYS_AUDIENCE_DELAY": str(self.args.delay),
                "JOURNEYS_TASK_PRIORITY": "true" if priority else "false"}

    async def start_worker(self, priority: bool) -> None:
        worker = WorkerProcess(self.data_dir, self.port, f"worker-{len(self.workers) + 1}",
                               overrides=self.env(priority))
        self.workers.append(worker)
        self.client = await worker.ready(timeout=120)
        self.router = Router(self.client, TASK_QUEUE, receipts=self.store, search_attributes=True,
                             priority=priority)
        self.ingestion = Ingestion(self.router, self.store, self.folder)

    def sample_cpu(self) -> None:
        pids = [w.process.pid for w in self.workers if w.process.poll() is None]
        pids += temporal_servers(self.data_dir)
        for pid in pids:
            self.cpu[pid] = max(self.cpu.get(pid, 0.0), cpu_seconds(pid))

    def cpu_split(self) -> tuple[float, float]:
        """(worker, server) CPU seconds seen so far."""
        workers = {w.process.pid for w in self.workers}
        return (sum(v for p, v in self.cpu.items() if p in workers),
                sum(v for p, v in self.cpu.items() if p not in workers))

    def starter(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "JOURNEYS_"))}
        env |= {"TEMPORAL_ADDRESS": f"127.0.0.1:{self.port}", "JOURNEYS_DATA_DIR": str(self.data_dir),
                "JOURNEYS_TASK_QUEUE": TASK_QUEUE, **self.env(True)}
        return subprocess.run([sys.executable, "starter.py", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)

    async def ping(self, label: str, seconds: float, until: asyncio.Event | None = None) -> list[float]:
        """Pings at --pings a second (open loop) for ``seconds`` or until ``until``; their
        event-to-first-send latencies in seconds."""
        sent: dict[str, float] = {}
        tracked: list[asyncio.Future[object]] = []
        k, started = 0, time.time()
        while time.time() - started < seconds and not (until and until.is_set()):
            user = f"ping-{label}-{k}"
            sent[user] = time.time()
            event = Event(id=f"{user}-e", name="Ping", user_id=user, time=datetime.now(UTC))
            tracked.append(asyncio.ensure_future(self.ingestion.track(event)))
            k += 1
            await asyncio.sleep(max(0.0, started + k / self.args.pings - time.time()))
        await asyncio.gather(*tracked, return_exceptions=True)
        deadline = time.time() + 120
        found: dict[str, float] = {}
        query = select(outbox.c.user_id, outbox.c.created_at).where(
            outbox.c.journey_id == PING_JOURNEY, outbox.c.user_id.in_(list(sent)))
        while time.time() < deadline and len(found) < len(sent):
            with self.store.engine.connect() as conn:
                found = {u: at.timestamp() for u, at in conn.execute(query)}
            await asyncio.sleep(0.5)
        return [found[u] - sent[u] for u in sent if u in found]

    async def schedule(self) -> ScheduleDescription:
        return await self.client.get_schedule_handle(schedule_id(BROADCAST)).describe()

    async def occurrence(self, known: set[datetime]) -> AudienceCounts | None:
        """The counts of the newest occurrence not in ``known``, once it has completed."""
        for action in (await self.schedule()).info.recent_actions:
            wid = getattr(action.action, "workflow_id", None)
            if action.scheduled_at in known or wid is None:
                continue
            handle = self.client.get_workflow_handle_for(AudienceWorkflow.run, wid)
            if (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED:
                return await handle.result()
        return None

    def entered(self) -> Counter[str]:
        with self.store.engine.connect() as conn:
            return Counter(u for (u,) in conn.execute(select(entries.c.user_id).where(
                entries.c.journey_id == BROADCAST)))

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        for pid in temporal_servers(self.data_dir):
            os.kill(pid, signal.SIGKILL)
        self.store.engine.dispose()


def entry(run: Run) -> SegmentNode:
    node = next(j for j in catalog(run.folder).journeys if j.id == BROADCAST).entry_node
    assert isinstance(node, SegmentNode)
    return node


def quantiles(latencies: Sequence[float]) -> str:
    if not latencies:
        return "no pings answered"
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms ({len(ordered)} pings)"


def p99(latencies: Sequence[float]) -> float:
    ordered = sorted(latencies) or [float("nan")]
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def broadcast(run: Run, label: str, kill: bool) -> tuple[list[float], AudienceCounts, float]:
    """An occurrence of the broadcast, pinged meanwhile (SIGKILL and restart halfway if ``kill``);
    returns the pings' latencies, the occurrence's counts and the seconds it took."""
    before = sum(run.entered().values())
    matching = segment.count(run.store, entry(run))[0]
    done = asyncio.Event()
    pinging = asyncio.ensure_future(run.ping(f"{label}-{time.monotonic():.0f}", 3600, done))
    started = time.monotonic()
    known = {a.scheduled_at for a in (await run.schedule()).info.recent_actions}
    shown = run.starter("audience", BROADCAST, "--trigger")
    if shown.returncode != 0:
        raise RuntimeError(shown.stderr)
    killed, counts = not kill, None
    while counts is None:
        run.sample_cpu()
        if not killed and sum(run.entered().values()) - before >= matching // 2:
            run.workers[-1].process.send_signal(signal.SIGKILL)
            run.workers[-1].process.wait(10)
            say("kill", f"worker SIGKILLed with {sum(run.entered().values()) - before} of {matching} entered")
            await run.start_worker(priority=label != "no-priority")
            killed = True
        if time.monotonic() - started > 7200:
            raise RuntimeError("the broadcast did not finish in 2 hours")
        await asyncio.sleep(1)
        try:
            counts = await run.occurrence(known)
        except RPCError:  # the worker (and its server) restarting
            counts = None
    seconds = time.monotonic() - started
    run.sample_cpu()
    done.set()
    return await pinging, counts, seconds


async def drill(database: str, url: str | None, args: argparse.Namespace) -> list[str]:
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="journeys-drill-audience-") as name:
        run = Run(Path(name), url, args)
        try:
            started = time.monotonic()
            rows, days = seed(run.store, args.profiles, args.active_days)
            size = behaviour_bytes(run.store, run.data_dir)
            say("seed", f"{database}: {args.profiles} profiles, {rows} behaviour rows in "
                        f"{time.monotonic() - started:.0f} s; behaviour "
                        + (f"{size / args.profiles:.0f} bytes a user, {size / days:.0f} a user's active day"
                           if size > 0 else "bytes: no dbstat here"))
            counted = run.starter("audience", BROADCAST, "--count")
            say("count", counted.stdout.strip() or counted.stderr.strip())
            if args.count_only:
                return failed
            await run.start_worker(priority=True)
            idle = await run.ping("idle", args.idle)  # 60 s: 120 pings, a p99 of more than the slowest two
            say("idle", f"ping journey, event to first send: {quantiles(idle)}")
            if not args.compare_only:
                failed += await killed_run(run, database)
            if not args.no_compare:  # the same broadcast again, no kill: with priority, then without
                for priority in [p for p in (True, False)
                                 if args.compare in ("both", "priority" if p else "no-priority")]:
                    await asyncio.sleep(10)  # the last one's journeys end: they may enter again
                    run.workers[-1].kill()
                    await run.start_worker(priority=priority)
                    label = "priority" if priority else "no-priority"
                    run.sample_cpu()
                    worker0, server0 = run.cpu_split()
                    plain, again, took = await broadcast(run, label, kill=False)
                    worker1, server1 = run.cpu_split()
                    per = max(1, again.started)
                    say("compare", f"{label}: {again.started} users entered ({again.already_in} still "
                                   f"in) in {took:.0f} s ({again.started / took:.1f}/s; CPU per user: "
                                   f"worker {(worker1 - worker0) / per * 1000:.1f} ms, server "
                                   f"{(server1 - server0) / per * 1000:.1f} ms); pings {quantiles(plain)}, "
                                   f"{p99(plain) / p99(idle):.1f}x the idle p99")
        finally:
            run.close()
    return failed


async def killed_run(run: Run, database: str) -> list[str]:
    """The first broadcast, its worker SIGKILLed halfway: everybody entered exactly once."""
    run.sample_cpu()
    worker0, server0 = run.cpu_split()
    pings, counts, seconds = await broadcast(run, "priority", kill=True)
    started_users = counts.started
    worker1, server1 = run.cpu_split()
    say("run", f"occurrence: matched {counts.matched}, started {counts.started}, already in "
               f"{counts.already_in}, skipped {counts.skipped}")
    say("run", f"{started_users} users entered in {seconds:.0f} s ({started_users / seconds:.1f}/s, "
               f"a SIGKILL and restart included); CPU per user: worker "
               f"{(worker1 - worker0) / started_users * 1000:.1f} ms, server "
               f"{(server1 - server0) / started_users * 1000:.1f} ms")
    say("pings", f"during it (a SIGKILL and restart included): {quantiles(pings)}")
    want = set(segment.members(run.store, entry(run)))
    got = run.entered()
    twice = [u for u, n in got.items() if n > 1]
    missed = want - set(got)
    ok = not twice and not missed
    say("check", f"nobody entered twice ({len(twice)}), nobody missed ({len(missed)}) "
                 f"{'ok' if ok else 'FAILED'}")
    return [] if ok else [f"{database}: exactly once"]


def postgres() -> str:
    url = os.environ.get("JOURNEYS_TEST_POSTGRES_URL")
    if url:
        return url
    found = subprocess.run(["bash", "scripts/ci/postgres.sh"], cwd=ROOT, capture_output=True, text=True)
    if not found.stdout.strip():
        raise SystemExit(f"no PostgreSQL: {found.stderr.strip()}")
    return found.stdout.strip()


async def main(args: argparse.Namespace) -> int:
    print(f"audience drill: {args.profiles} profiles, {args.active_days} active days each, "
          f"rate {args.rate}/s\n{machine()}", flush=True)
    failed: list[str] = []
    if args.database in {"sqlite", "both"}:
        failed += await drill("SQLite", None, args)
    if args.database in {"postgresql", "both"}:
        from tests.helpers.postgres import fresh_database
        os.environ.setdefault("JOURNEYS_TEST_POSTGRES_URL", postgres())
        with fresh_database("journeys_drill_audience") as url:
            failed += await drill("PostgreSQL", url, args)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    print("all checks passed")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = script_parser("python -m scripts.drill_audience", __doc__)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--active-days", type=int, default=12, help="active days a year per user")
    parser.add_argument("--rate", type=float, default=200.0, help="JOURNEYS_AUDIENCE_RATE")
    parser.add_argument("--pings", type=float, default=2.0, help="ping events a second")
    parser.add_argument("--idle", type=float, default=60.0,
                        help="seconds of pings before the broadcasts: the idle figure")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--delay", type=float, default=Settings.model_fields["audience_delay"].default,
                        help="JOURNEYS_AUDIENCE_DELAY, the worker's default if not given (0: --rate)")
    parser.add_argument("--no-compare", action="store_true", help="skip the runs without a kill")
    parser.add_argument("--compare-only", action="store_true", help="skip the run with a kill")
    parser.add_argument("--compare", choices=("both", "priority", "no-priority"), default="both",
                        help="which of the runs without a kill (each 20,000 users is half an hour here)")
    parser.add_argument("--count-only", action="store_true",
                        help="seed and count only: bytes and the segment query's time, no worker")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run_script(main(parse_args()))
