"""Benchmark: journeys against a bare workflow of the same shape, on one Temporal dev server.

    python -m tests.bench [--users 200] [--rounds 3] [--rounds-memory 1] [--delay 1] [--breakdown]

Both kinds run against the same ``temporal server start-dev`` in this process's care, with
their workers in this process:

- journey: a copy of ``examples/abandoned-cart.yaml`` cut to the bare shape (inaction window
  1 s > push > delay 1 s > push; the 20 h wait and the email are dropped), entered through
  ``workflows.router.route_event`` with search attributes on, as in production;
- bare: ``tests.bench_workflows.BareWorkflow``: timer 1 s, activity, timer 1 s, activity, whose
  activity claims one row in the same SQLite outbox.

The batches alternate (a warm-up of each first); throughput is N over the time from the
first start to the last completion. The server is the embedded default: a SQLite file with
``journal_mode=wal`` and ``synchronous=normal``. Then a round of each runs on an in-memory dev
server, to show what the file costs. ``--breakdown`` adds the journey without search
attributes, to show what they cost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import temporalio.service
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import build_activities
from journeys.durations import format_duration
from journeys.events import Event, workflow_id
from journeys.loader import load_file
from journeys.logs import configure_logging
from journeys.models import Journey
from journeys.store import OutboxRow, Store
from tests.bench_workflows import BareInput, BareWorkflow, BareWrite
from workflows.journey import JourneyWorkflow
from workflows.models import SEARCH_ATTRIBUTES
from workflows.router import route_event
from workflows.runtime import PASSTHROUGH, binary, journey_worker

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
JOURNEY_QUEUE = "bench-journeys"
BARE_QUEUE = "bench-bare"
BARE_JOURNEY_ID = "bare-bench"
PRODUCT = {"product_name": "iPhone 14", "product_image": "https://shop.example/iphone-14.png",
           "price": 799, "currency": "USD", "product_url": "https://shop.example/p/iphone-14"}
WAL_ARGS = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
TARGET_RATIO = 0.9


# --- the two workloads ---------------------------------------------------------------------

def bench_journey(delay: timedelta) -> Journey:
    """The abandoned cart, cut to the bare shape: inaction window > push > delay > push."""
    journey = load_file(EXAMPLES / "abandoned-cart.yaml").journey
    if journey is None:
        raise SystemExit("examples/abandoned-cart.yaml does not load")
    data = journey.model_dump(mode="json")
    nodes = {node["id"]: node for node in data["nodes"]}
    nodes["cart-abandoned"]["within"] = format_duration(delay)
    nodes["wait-followup"]["duration"] = format_duration(delay)
    nodes["push-followup"]["next"] = None
    data["nodes"] = [n for n in data["nodes"] if n["id"] not in ("wait-email", "email-product")]
    data["id"] = "abandoned-cart-bench"
    return Journey.model_validate(data)


class BareActivities:
    """The bare workflow's activity: one outbox row, through the same store as the sends."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @activity.defn(name="bare_write")
    def write(self, input: BareWrite) -> bool:
        _, inserted = self.store.outbox_claim(OutboxRow(
            idempotency_key=input.idempotency_key, journey_id=BARE_JOURNEY_ID,
            user_id=input.user_id, workflow_id=input.workflow_id, node_id=input.node_id,
            channel="push", status="delivered", content={"body": "bare"}))
        return inserted


def bare_worker(client: Client, store: Store, executor: ThreadPoolExecutor) -> Worker:
    """Configured like ``journey_worker``: same sandbox passthrough, same activity slots."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(
        *PASSTHROUGH, "tests.bench_workflows")
    return Worker(client, task_queue=BARE_QUEUE, workflows=[BareWorkflow],
                  activities=[BareActivities(store).write], activity_executor=executor,
                  workflow_runner=SandboxedWorkflowRunner(restrictions=restrictions),
                  max_concurrent_activities=executor._max_workers)


def production_logs(sink: TextIO) -> None:
    """Log as ``worker.py`` does (a JSON object per line) into ``sink``: the cost, not the noise."""
    configure_logging(sink)


# --- measuring -----------------------------------------------------------------------------

def _server_pids() -> list[int]:
    """The dev server: this process's child processes."""
    me, pids = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            pids.append(int(stat.parent.name))
    return pids


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dataclass
class Batch:
    server: str
    kind: str  # "journey" or "bare"
    label: str
    users: int
    seconds: float  # first start to last completion
    latencies: list[float]  # event to first send, minus the window, in seconds
    worker_cpu: float  # this process (client + both workers), seconds
    server_cpu: float
    failures: int
    hiccups: int = 0  # workflow tasks that timed out or failed, activity attempts after the first

    @property
    def rate(self) -> float:
        return self.users / self.seconds

    def pct(self, q: float) -> float:
        values = sorted(self.latencies)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


async def _timed(users: Sequence[str], one: Callable[[str], Awaitable[bool]]
                 ) -> tuple[float, float, float, int]:
    """Run ``one`` for every user at once; (seconds, own CPU, server CPU, failures)."""
    servers = _server_pids()
    cpu0, server0 = time.process_time(), sum(_cpu_seconds(p) for p in servers)
    start = time.time()
    done = await asyncio.gather(*(one(u) for u in users), return_exceptions=True)
    seconds = time.time() - start
    failures = sum(1 for d in done if d is not True)
    for d in done:
        if isinstance(d, BaseException):
            print(f"  failure: {type(d).__name__}: {d}", file=sys.stderr)
            break
    return (seconds, time.process_time() - cpu0,
            sum(_cpu_seconds(p) for p in servers) - server0, failures)


async def _hiccups(client: Client, workflow_ids: Sequence[str]) -> int:
    """Read after the batch (outside its time): what went less than smoothly, from the histories.

    A workflow task that times out is mostly a sticky one that waited more than 5 s for a busy
    worker; the server then hands it to any worker, which replays the whole history.
    """
    gate = asyncio.Semaphore(16)

    async def count(workflow_id: str) -> int:
        async with gate:
            n = 0
            async for e in client.get_workflow_handle(workflow_id).fetch_history_events():
                if e.event_type in (EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
                                    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED):
                    n += 1
                elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                    n += e.activity_task_started_event_attributes.attempt - 1
            return n

    return sum(await asyncio.gather(*(count(w) for w in workflow_ids)))


def _latencies(store: Store, journey_id: str, node_id: str, started: dict[str, float],
               delay: timedelta) -> list[float]:
    rows = [r for r in store.outbox_list(journey_id=journey_id)
            if r.user_id in started and r.node_id == node_id and r.created_at]
    return [r.created_at.timestamp() - started[r.user_id] - delay.total_seconds()
            for r in rows if r.created_at]


async def journey_batch(client: Client, store: Store, journey: Journey, users: Sequence[str],
                        delay: timedelta, server: str, label: str, *,
                        search_attributes: bool = True) -> Batch:
    started: dict[str, float] = {}

    async def one(user: str) -> bool:
        event = Event(id=f"{user}-cart", name="Added To Cart", user_id=user, properties=PRODUCT,
                      time=datetime.now(UTC))
        started[user] = time.time()
        routed = await route_event(client, [journey], event, JOURNEY_QUEUE,
                                   search_attributes=search_attributes)
        if not routed or routed[0].action != "started":
            raise RuntimeError(f"{user}: routed {routed}")
        state = await client.get_workflow_handle_for(JourneyWorkflow.run, routed[0].workflow_id).result()
        return [m.status for m in state.messages] == ["delivered", "delivered"]

    seconds, cpu, server_cpu, failures = await _timed(users, one)
    return Batch(server, "journey" if search_attributes else "j-no-sa", label, len(users), seconds,
                 _latencies(store, journey.id, "push-reminder", started, delay),
                 cpu, server_cpu, failures,
                 await _hiccups(client, [workflow_id(journey.id, u) for u in users]))


async def bare_batch(client: Client, store: Store, users: Sequence[str], delay: timedelta,
                     server: str, label: str) -> Batch:
    started: dict[str, float] = {}

    async def one(user: str) -> bool:
        started[user] = time.time()
        handle = await client.start_workflow(BareWorkflow.run, BareInput(user_id=user, delay=delay),
                                             id=f"bare-{user}", task_queue=BARE_QUEUE)
        return await handle.result() == 2

    seconds, cpu, server_cpu, failures = await _timed(users, one)
    return Batch(server, "bare", label, len(users), seconds,
                 _latencies(store, BARE_JOURNEY_ID, "first", started, delay),
                 cpu, server_cpu, failures, await _hiccups(client, [f"bare-{u}" for u in users]))


# --- a server's worth of batches -----------------------------------------------------------

def _print_batch(b: Batch) -> None:
    print(f"  {b.server:<7} {b.label:<9} {b.kind:<8} {b.users:>5} {b.seconds:>8.2f} {b.rate:>8.1f} "
          f"{b.pct(50) * 1000:>8.0f} {b.pct(99) * 1000:>8.0f} "
          f"{b.worker_cpu / b.users * 1000:>8.1f} {b.server_cpu / b.users * 1000:>8.1f} "
          f"{b.hiccups:>6} {b.failures:>5}", flush=True)


def _print_header() -> None:
    print(f"  {'server':<7} {'batch':<9} {'kind':<8} {'users':>5} {'seconds':>8} {'per s':>8} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'wrk ms':>8} {'srv ms':>8} {'hiccup':>6} {'fail':>5}")


async def run_server(name: str, env: WorkflowEnvironment, store: Store, journey: Journey,
                     args: argparse.Namespace, rounds: int, warmup: int) -> list[Batch]:
    delay = timedelta(seconds=args.delay)
    client = env.client
    batches: list[Batch] = []
    counter = 0

    def users(kind: str, n: int) -> list[str]:
        nonlocal counter
        counter += 1
        return [f"{name}-{kind}{counter}-{i:05d}" for i in range(n)]

    async def run(kind: str, label: str, n: int) -> None:
        if kind == "journey":
            batch = await journey_batch(client, store, journey, users("j", n), delay, name, label)
        elif kind == "j-no-sa":
            batch = await journey_batch(client, store, journey, users("n", n), delay, name, label,
                                        search_attributes=False)
        else:
            batch = await bare_batch(client, store, users("b", n), delay, name, label)
        batches.append(batch)
        _print_batch(batch)
        await asyncio.sleep(1)  # let the server finish its background work between batches

    with ThreadPoolExecutor(8) as journey_pool, ThreadPoolExecutor(8) as bare_pool:
        async with journey_worker(client, JOURNEY_QUEUE, build_activities(store), journey_pool), \
                bare_worker(client, store, bare_pool):
            if warmup:
                await run("bare", "warm-up", warmup)
                await run("journey", "warm-up", warmup)
            kinds = ["bare", "journey", *(["j-no-sa"] if args.breakdown else [])]
            for r in range(rounds):
                order = kinds if r % 2 == 0 else kinds[::-1]
                for kind in order:
                    await run(kind, f"round {r + 1}", args.users)
    return [b for b in batches if b.label != "warm-up"]


async def start_server(tmp: Path, *, wal_file: bool) -> WorkflowEnvironment:
    extra = WAL_ARGS if wal_file else []
    return await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter, dev_server_existing_path=binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_database_filename=str(tmp / "temporal.db") if wal_file else None,
        dev_server_extra_args=extra)


# --- report --------------------------------------------------------------------------------

def _machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cli = subprocess.run([binary("temporal"), "--version"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        cli = "temporal CLI (version unknown)"
    cpus = len(os.sched_getaffinity(0))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine:  {cpus} CPUs (nproc), {model}, {platform.system()} {platform.release()}; "
            f"load average before the run {load}\n"
            f"software: Python {platform.python_version()}, temporalio "
            f"{temporalio.service.__version__}, {cli}")


@dataclass
class Kind:
    """Every measured batch of one kind on one server."""

    batches: list[Batch]

    @property
    def rates(self) -> list[float]:
        return [b.rate for b in self.batches]

    @property
    def best(self) -> float:
        return max(self.rates)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    def latency_ms(self, q: float) -> float:
        values = sorted(x for b in self.batches for x in b.latencies)
        if not values:
            return float("nan")
        return 1000 * values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]

    def cpu_ms(self, server: bool = False) -> float:
        total = sum(b.server_cpu if server else b.worker_cpu for b in self.batches)
        return 1000 * total / sum(b.users for b in self.batches)


def _kinds(batches: list[Batch]) -> dict[str, Kind]:
    names = dict.fromkeys(b.kind for b in batches)
    return {name: Kind([b for b in batches if b.kind == name]) for name in names}


def report(main: list[Batch], memory: list[Batch], server_rss: float, wall: float) -> None:
    kinds = _kinds(main)
    bare, journey = kinds["bare"], kinds["journey"]
    ratio_med, ratio_best = journey.median / bare.median, journey.best / bare.best
    print()
    print(f"Summary: WAL-file dev server (the embedded default), {len(bare.batches)} alternating "
          f"batches of each kind, {main[0].users} users each")
    print(f"  {'':<40} {'best':>7} {'median':>7}")
    print(f"  {'bare workflows per second':<40} {bare.best:>7.1f} {bare.median:>7.1f}")
    print(f"  {'journeys per second':<40} {journey.best:>7.1f} {journey.median:>7.1f}")
    verdict = "meets" if ratio_med >= TARGET_RATIO else "BELOW"
    print(f"  {'ratio journey / bare':<40} {ratio_best:>7.2f} {ratio_med:>7.2f}   "
          f"{verdict} the target of {TARGET_RATIO:.2f} (on the medians)")
    if "j-no-sa" in kinds:
        nosa = kinds["j-no-sa"]
        print(f"  {'journeys/s without search attributes':<40} {nosa.best:>7.1f} {nosa.median:>7.1f}"
              f"   ratio to bare {nosa.median / bare.median:.2f}")
    print(f"  event to first send, journey: p50 {journey.latency_ms(50):.0f} ms, "
          f"p99 {journey.latency_ms(99):.0f} ms (bare, start to first write: "
          f"p50 {bare.latency_ms(50):.0f} ms, p99 {bare.latency_ms(99):.0f} ms)")
    for name, kind in kinds.items():
        print(f"  CPU per workflow, {name + ':':<8} bench process (client + workers) "
              f"{kind.cpu_ms():.1f} ms, dev server {kind.cpu_ms(server=True):.1f} ms")
    print(f"  worker RSS (the bench process): max {_max_rss_mib():.0f} MiB (ru_maxrss), "
          f"now {_rss_mib():.0f} MiB (VmRSS); dev server {server_rss:.0f} MiB (VmRSS)")
    print(f"  embedded default (SQLite file, WAL, synchronous=normal): {journey.median:.1f} "
          f"journeys/s, {ratio_med:.0%} of the bare workflow's {bare.median:.1f}/s on the same server")
    if memory:
        mem = _kinds(memory)
        mem_b, mem_j = mem["bare"].median, mem["journey"].median
        print(f"  in-memory dev server, for reference: bare {mem_b:.1f}/s, journeys {mem_j:.1f}/s, "
              f"ratio {mem_j / mem_b:.2f}; the WAL file reaches {bare.median / mem_b:.0%} (bare) and "
              f"{journey.median / mem_j:.0%} (journeys) of in-memory")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"  wall time of the whole benchmark: {wall:.0f} s; load average after it {load}")


def _describe(journey: Journey, delay: timedelta, args: argparse.Namespace, warmup: int) -> None:
    d = format_duration(delay)
    print("Journeys against bare Temporal workflows of the same shape")
    print(_machine())
    print(f"journey:  {journey.id}: examples/abandoned-cart.yaml with the inaction window and the "
          f"delay set to {d},\n          the 20h wait and the email dropped, for the bare shape "
          f"(timer > send > timer > send); entered through\n          route_event (describe + "
          f"signal-with-start); search attributes JourneyId, UserId, JourneyNode set and upserted")
    print(f"bare:     tests.bench_workflows.BareWorkflow: timer {d} > activity > timer {d} > "
          f"activity; each activity claims one row\n          in the same SQLite outbox (a send "
          f"also reads the profile and the outbox, renders, and marks the row delivered)")
    then = "; then the same on an in-memory dev server" if args.rounds_memory else ""
    print("server:   one dev server (temporal server start-dev) on a SQLite file, journal_mode=wal, "
          "synchronous=normal:\n          the embedded default. Both kinds run on it, alternating, "
          "each with its own worker (8 activity\n          threads, same sandbox passthrough) in this "
          f"process{then}")
    print(f"batches:  a warm-up of {warmup} users of each kind, then {args.rounds} rounds of "
          f"{args.users} users of each kind, started at once")
    print(f"measures: per s = users / (first start to last completion), the two {d} "
          f"timers included; latency (p50, p99) = the first\n          outbox row's created_at - the "
          f"route_event call (bare: start_workflow) - the {d} window, with every user\n          of "
          f"the batch entering at once; wrk / srv ms = CPU of this process / of the dev server, per "
          f"workflow;\n          hiccup = workflow tasks timed out or failed + activity retries, read "
          f"from the histories afterwards\n"
          f"logs:     the activities log as worker.py configures them (JSON lines), into /dev/null")


async def main(args: argparse.Namespace) -> int:
    wall0 = time.time()
    delay = timedelta(seconds=args.delay)
    journey = bench_journey(delay)
    warmup = max(10, args.users // 4)
    _describe(journey, delay, args, warmup)
    failures = 0
    server_rss = 0.0
    main_batches: list[Batch] = []
    memory: list[Batch] = []
    with tempfile.TemporaryDirectory(prefix="journeys-bench-") as tmp_name, \
            open(os.devnull, "w") as sink:
        production_logs(sink)
        tmp = Path(tmp_name)
        store = Store(f"sqlite:///{tmp / 'journeys.db'}")
        for name, rounds in (("wal", args.rounds), ("memory", args.rounds_memory)):
            if not rounds:
                continue
            print()
            env = await start_server(tmp, wal_file=name == "wal")
            _print_header()
            try:
                batches = await run_server(name, env, store, journey, args, rounds, warmup)
                if name == "wal":
                    main_batches = batches
                    server_rss = sum(_rss_mib(p) for p in _server_pids())
                else:
                    memory = batches
            finally:
                await env.shutdown()
            failures += sum(b.failures for b in batches)
        store.engine.dispose()
    report(main_batches, memory, server_rss, time.time() - wall0)
    if failures:
        print(f"FAILED: {failures} workflows did not complete as expected")
    return 1 if failures else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200, help="users (workflows) per batch")
    parser.add_argument("--rounds", type=int, default=3,
                        help="batches of each kind after the warm-up (alternating)")
    parser.add_argument("--delay", type=int, default=1,
                        help="seconds of each timer (the inaction window and the delay)")
    parser.add_argument("--rounds-memory", type=int, default=1, metavar="R",
                        help="rounds on an in-memory dev server afterwards, for reference (0: none)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also run the journey without search attributes (route_event "
                             "search_attributes=False), to show what they cost")
    args = parser.parse_args(argv)
    if args.users < 1 or args.rounds < 1 or args.delay < 1 or args.rounds_memory < 0:
        parser.error("--users, --rounds and --delay must be at least 1")
    return args


if __name__ == "__main__":
    code = 1
    try:
        code = asyncio.run(main(parse_args()))
    except KeyboardInterrupt:
        code = 130
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal client's Rust threads can abort the interpreter at exit (sdk-python #300).
    os._exit(code)
