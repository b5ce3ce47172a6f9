"""The ingestion benchmark's throughput: a batch of events of one kind, then the worker process and
the dev server left to go idle; and, at the end, every entry parked where it should be.

The kinds: ``ingest`` (``ingestion.files.ingest`` in this process), ``http`` (``POST /v1/batch``),
``bare`` (a signal-with-start loop); with ``--ingest-breakdown`` variants of ingest.
"""

from __future__ import annotations

import asyncio
import cProfile
import functools
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from temporalio.client import Client

from ingestion.files import ingest
from ingestion.pipeline import Ingestion
from journeys.store.database import Store
from scripts.bench_ingest_setup import (
    ENTERED,
    PARK,
    WorkerProcess,
    lines_for,
    servers,
    start_bare,
)
from scripts.bench_ingest_workflows import BareParkWorkflow
from scripts.common import cpu_seconds

#: Idle: the worker and the server together under this share of a core.
IDLE_SHARE = 0.15


@dataclass
class Run:
    kind: str  # "bare", "ingest", "http"; with --ingest-breakdown "no-sa", "no-rcpt", "no-count"
    label: str
    events: int
    seconds: float  # first send to the last client call's return
    drained: float  # first send to the worker and the server idle: every entry parked
    cpu: float  # this process (client; the HTTP app too), to idle
    worker_cpu: float  # the worker process, to idle
    server_cpu: float  # the dev server, to idle
    failures: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def sustained(self) -> float:
        return self.events / self.drained



@dataclass
class Bench:
    client: Client
    store: Store
    worker: WorkerProcess
    ingestion: Ingestion
    variants: dict[str, Ingestion]  # --ingest-breakdown: ingest without a part
    http: httpx.AsyncClient
    concurrency: int
    batch: int
    counter: int = 0
    quiet: float = 0.25
    servers: list[int] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)

    def users(self, kind: str, n: int) -> list[str]:
        self.counter += 1
        return [f"{kind}{self.counter}-{i:05d}" for i in range(n)]

    def server_cpu(self) -> float:
        if not self.servers:  # looked up once: /proc is not read again in every idle poll
            self.servers = servers(self.worker.process.pid)
        return sum(cpu_seconds(p) for p in self.servers)

    def _others(self) -> float:
        return self.worker.cpu() + self.server_cpu()

    async def idle(self, timeout: float = 90.0) -> None:
        """Until the worker and the server are idle: the backlog of a batch is not the next's.

        Idle is a window of ``quiet`` seconds with the two under ``IDLE_SHARE`` of a core.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = self._others()
            await asyncio.sleep(self.quiet)
            if self._others() - before < IDLE_SHARE * self.quiet:
                return

    async def run(self, kind: str, label: str, n: int, profiler: cProfile.Profile | None = None) -> Run:
        """One batch: the client's time and CPU to the last return; the others' to idle."""
        users = self.users(kind, n)
        lines = lines_for(users, ENTERED)
        go = {"bare": self._bare, "ingest": self._ingest, "http": self._http}.get(kind)
        if go is None:  # a variant of ingest
            go = functools.partial(self._ingest, ingestion=self.variants[kind])
        cpu0, worker0, server0 = time.process_time(), self.worker.cpu(), self.server_cpu()
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        failures = await go(lines)
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        await self.idle()
        drained = time.perf_counter() - start - self.quiet
        self.totals[kind] = self.totals.get(kind, 0) + n
        return Run(kind, label, n, seconds, max(seconds, drained), cpu, self.worker.cpu() - worker0,
                   self.server_cpu() - server0, failures)

    async def _bare(self, lines: Sequence[str]) -> int:
        gate, failures, tasks = asyncio.Semaphore(self.concurrency), 0, []

        async def one(text: str) -> None:
            nonlocal failures
            try:
                await start_bare(self.client, BareParkWorkflow, text)
            except Exception as exc:
                failures += 1
                first_failure(failures, exc)
            finally:
                gate.release()

        for text in lines:
            await gate.acquire()
            tasks.append(asyncio.create_task(one(text)))
        await asyncio.gather(*tasks)
        return failures

    async def _ingest(self, lines: Sequence[str], ingestion: Ingestion | None = None) -> int:
        summary = await ingest(ingestion or self.ingestion, lines, self.concurrency)
        for failure in summary.failed[:1] + summary.refused[:1]:
            print(f"  failure: {failure}", file=sys.stderr)
        return len(lines) - summary.started + len(summary.failed)

    async def _http(self, lines: Sequence[str]) -> int:
        items = [{"type": "track", **json.loads(text)} for text in lines]
        batches = [items[i:i + self.batch] for i in range(0, len(items), self.batch)]
        gate, failures = asyncio.Semaphore(self.concurrency), 0

        async def post(batch: list[dict[str, Any]]) -> None:
            nonlocal failures
            async with gate:
                try:
                    response = await self.http.post("/v1/batch", json={"batch": batch})
                    if response.status_code != 200:
                        raise RuntimeError(f"{response.status_code} {response.text[:300]}")
                except Exception as exc:
                    failures += len(batch)
                    first_failure(failures, exc)

        await asyncio.gather(*(post(b) for b in batches))
        return failures


def first_failure(failures: int, exc: BaseException) -> None:
    if failures == 1:
        print(f"  failure: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)


async def parked(client: Client, totals: dict[str, int], timeout: float = 20.0) -> list[str]:
    """Every entry is a running workflow parked where it should be: what is missing."""
    journeys = sum(n for kind, n in totals.items() if kind != "bare")
    queries = {"journeys": ('WorkflowType = "JourneyWorkflow" AND ExecutionStatus = "Running"', journeys),
               "journeys with search attributes": (
                   f'JourneyId = "{PARK}" AND JourneyNode = "parked" AND ExecutionStatus = "Running"',
                   journeys - totals.get("no-sa", 0)),
               "bare": ('WorkflowType = "BareParkWorkflow" AND ExecutionStatus = "Running"',
                        totals.get("bare", 0))}
    deadline = time.monotonic() + timeout
    while True:
        missing: list[str] = []
        for name, (query, expected) in queries.items():
            count = (await client.count_workflows(query)).count
            if count != expected:
                missing.append(f"{name}: {count} of {expected} running and parked")
        if not missing or time.monotonic() > deadline:
            return missing
        await asyncio.sleep(0.5)
