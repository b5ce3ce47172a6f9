"""What ``python -m scripts.bench`` measures, and how it reports it.

Each batch's wall time and CPU (this process, and the dev server, its child, from /proc), its
latencies from the outbox, its hiccups from the histories; the summary over every batch.
"""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import temporalio.service
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from journeys.store.database import Store
from scripts.common import Table, cpu_seconds, proc_stat
from service.costs import Cost, cost_of
from service.runtime import binary

TARGET_RATIO = 0.95
#: The cost targets against the bare workflow: billable actions, history bytes (issue 16).
TARGET_ACTIONS, TARGET_BYTES = 1.2, 1.5


# --- this process and the dev server -------------------------------------------------------

def server_pids() -> list[int]:
    """The dev server: this process's child processes."""
    me, pids = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = proc_stat(stat.parent.name)
        except OSError:
            continue
        if int(fields[1]) == me:
            pids.append(int(stat.parent.name))
    return pids


def rss_mib(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


# --- a batch -------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``; NaN when there are none."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


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
    cost: Cost | None = None  # per workflow, from a sample of the histories (service.costs)

    @property
    def rate(self) -> float:
        return self.users / self.seconds

    def pct(self, q: float) -> float:
        return percentile(self.latencies, q)


async def timed(users: Sequence[str], one: Callable[[str], Awaitable[bool]]
                 ) -> tuple[float, float, float, int]:
    """Run ``one`` for every user at once; (seconds, own CPU, server CPU, failures)."""
    servers = server_pids()
    cpu0, server0 = time.process_time(), sum(cpu_seconds(p) for p in servers)
    start = time.time()
    done = await asyncio.gather(*(one(u) for u in users), return_exceptions=True)
    seconds = time.time() - start
    failures = sum(1 for d in done if d is not True)
    for d in done:
        if isinstance(d, BaseException):
            print(f"  failure: {type(d).__name__}: {d}", file=sys.stderr)
            break
    return (seconds, time.process_time() - cpu0,
            sum(cpu_seconds(p) for p in servers) - server0, failures)


async def hiccups(client: Client, workflow_ids: Sequence[str]) -> int:
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


#: Histories of a batch read for its cost (the figures are the same for every user of a batch).
COST_SAMPLE = 20


async def costs(client: Client, workflow_ids: Sequence[str]) -> Cost:
    """The mean actions, events and bytes of the first ``COST_SAMPLE`` workflows' histories."""
    async def one(workflow_id: str) -> Cost:
        return cost_of([e async for e in client.get_workflow_handle(workflow_id).fetch_history_events()])

    return Cost.mean(await asyncio.gather(*(one(w) for w in workflow_ids[:COST_SAMPLE])))


def latencies(store: Store, journey_id: str, node_id: str, started: dict[str, float],
              delay: timedelta) -> list[float]:
    """Each user's first outbox row's time after the start, minus the ``delay`` window."""
    rows = [r for r in store.outbox_list(journey_id=journey_id)
            if r.user_id in started and r.node_id == node_id and r.created_at]
    return [r.created_at.timestamp() - started[r.user_id] - delay.total_seconds()
            for r in rows if r.created_at]


# --- printing ------------------------------------------------------------------------------

BATCHES = Table(("server", "<7"), ("batch", "<9"), ("kind", "<8"), ("users", ">5"), ("seconds", ">8.2f"),
                ("per s", ">8.1f"), ("p50 ms", ">8.0f"), ("p99 ms", ">8.0f"), ("wrk ms", ">8.1f"),
                ("srv ms", ">8.1f"), ("hiccup", ">6"), ("fail", ">5"))


def print_header() -> None:
    BATCHES.header()


def print_batch(b: Batch) -> None:
    BATCHES.row(b.server, b.label, b.kind, b.users, b.seconds, b.rate, b.pct(50) * 1000, b.pct(99) * 1000,
                b.worker_cpu / b.users * 1000, b.server_cpu / b.users * 1000, b.hiccups, b.failures)


def machine() -> str:
    """The machine and the software the numbers come from."""
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
    return (f"machine:  {cpus} CPUs (nproc), {model}, {platform.system()} {platform.release()}; "
            f"load average before the run {_load_average()}\n"
            f"software: Python {platform.python_version()}, temporalio "
            f"{temporalio.service.__version__}, {cli}")


# --- the summary ---------------------------------------------------------------------------

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
        return 1000 * percentile([x for b in self.batches for x in b.latencies], q)

    def cpu_ms(self, server: bool = False) -> float:
        total = sum(b.server_cpu if server else b.worker_cpu for b in self.batches)
        return 1000 * total / sum(b.users for b in self.batches)


def _kinds(batches: list[Batch]) -> dict[str, Kind]:
    names = dict.fromkeys(b.kind for b in batches)
    return {name: Kind([b for b in batches if b.kind == name]) for name in names}


def _print_costs(found: dict[str, Cost | None]) -> None:
    """Per workflow, from its history: Temporal Cloud's billable actions, events, bytes; and each
    kind against the bare workflow's."""
    bare = found.get("bare")
    for name, cost in found.items():
        if cost is None:
            continue
        against = "" if bare is None or name == "bare" else (
            f"   ({cost.actions / bare.actions:.2f}x, {cost.events / bare.events:.2f}x, "
            f"{cost.bytes / bare.bytes:.2f}x the bare workflow's; targets {TARGET_ACTIONS}x actions "
            f"{'met' if cost.actions / bare.actions <= TARGET_ACTIONS else 'MISSED'}, "
            f"{TARGET_BYTES}x bytes {'met' if cost.bytes / bare.bytes <= TARGET_BYTES else 'MISSED'})")
        print(f"  cost per workflow, {name + ':':<8} {cost.actions:.1f} billable actions, "
              f"{cost.events:.0f} history events, {cost.bytes:,.0f} history bytes{against}")


def report(main: list[Batch], memory: list[Batch], server_rss: float, wall: float) -> None:
    """The summary: the WAL-file server's batches, then the in-memory server's for reference."""
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
    _print_costs({name: kind.batches[-1].cost for name, kind in kinds.items()})
    print(f"  worker RSS (the bench process): max {_max_rss_mib():.0f} MiB (ru_maxrss), "
          f"now {rss_mib():.0f} MiB (VmRSS); dev server {server_rss:.0f} MiB (VmRSS)")
    print(f"  embedded default (SQLite file, WAL, synchronous=normal): {journey.median:.1f} "
          f"journeys/s, {ratio_med:.0%} of the bare workflow's {bare.median:.1f}/s on the same server")
    if memory:
        mem = _kinds(memory)
        mem_b, mem_j = mem["bare"].median, mem["journey"].median
        print(f"  in-memory dev server, for reference: bare {mem_b:.1f}/s, journeys {mem_j:.1f}/s, "
              f"ratio {mem_j / mem_b:.2f}; the WAL file reaches {bare.median / mem_b:.0%} (bare) and "
              f"{journey.median / mem_j:.0%} (journeys) of in-memory")
    print(f"  wall time of the whole benchmark: {wall:.0f} s; load average after it {_load_average()}")

