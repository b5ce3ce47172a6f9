"""The ingestion benchmark's latency: event to first send, at a steady paced rate of arrivals.

A journey whose entry is followed at once by an sms, entered through ``Ingestion.track`` (as
ingest does), against ``BareSendWorkflow``; the latency and its stages read from the histories.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from journeys.ingest import parse_line
from scripts.bench_ingest_setup import PING, PINGED, lines_for, start_bare
from scripts.bench_ingest_throughput import Bench, first_failure
from scripts.bench_ingest_workflows import BareSendWorkflow

#: The stages of event to first send, from the history (each from the end of the one before).
STAGES = ("accepted", "to worker", "workflow task", "to activity")


async def first_activity_starts(client: Client, sent: dict[str, float]
                                ) -> tuple[list[float], list[list[float]]]:
    """Each workflow's first ActivityTaskStarted time minus its event's send time, in seconds;
    and its stages (:data:`STAGES`): the start accepted (WorkflowExecutionStarted), the first
    workflow task picked up, that task completed, the activity started."""
    gate = asyncio.Semaphore(32)

    async def one(workflow_id: str, at: float) -> tuple[float, list[float]] | None:
        times: dict[int, float] = {}
        async with gate:
            async for e in client.get_workflow_handle(workflow_id).fetch_history_events():
                times.setdefault(e.event_type, e.event_time.ToDatetime(tzinfo=UTC).timestamp())
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                    marks = [at, *(times.get(t, float("nan")) for t in (
                        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
                        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
                        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)), times[e.event_type]]
                    return marks[-1] - at, [b - a for a, b in itertools.pairwise(marks)]
        return None

    found = [x for x in await asyncio.gather(*(one(w, at) for w, at in sent.items())) if x]
    return [total for total, _ in found], [stages for _, stages in found]


@dataclass
class Ping:
    kind: str  # "bare" or "journey"
    label: str
    events: int
    rate: float  # the arrival rate asked for
    latencies: list[float]
    lag: float  # the latest send after its scheduled time (the pacing held if small)
    failures: int
    stages: list[list[float]] = field(default_factory=list)  # each event's STAGES, seconds


async def ping(bench: Bench, kind: str, label: str, rate: float, seconds: float) -> Ping:
    """``seconds`` of events of ``kind`` (``bare`` or ``journey``) arriving at ``rate`` a second."""
    n = max(1, round(rate * seconds))
    users = bench.users("pb" if kind == "bare" else "pj", n)
    lines = lines_for(users, PINGED)
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05
    wall0 = time.time() - loop.time()  # loop time -> wall time (the histories' clock)
    scheduled: dict[str, float] = {}
    tasks, lag, failures = [], 0.0, 0

    async def one(number: int, text: str) -> None:
        nonlocal failures
        try:
            if kind == "bare":
                await start_bare(bench.client, BareSendWorkflow, text)
            else:
                line = parse_line(text, number)
                assert line is not None
                routed = await bench.ingestion.track(line.event, line.profile)
                if [r.action for r in routed] != ["started"]:
                    raise RuntimeError(f"routed {routed}")
        except Exception as exc:
            failures += 1
            first_failure(failures, exc)

    for i, (user, text) in enumerate(zip(users, lines, strict=True)):
        at = t0 + i / rate
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lag = max(lag, loop.time() - at)
        scheduled[user] = wall0 + at
        tasks.append(asyncio.create_task(one(i + 1, text)))
    await asyncio.gather(*tasks)
    await bench.idle()
    prefix = "bare/" if kind == "bare" else f"journey/{PING}/"
    latencies, stages = await first_activity_starts(
        bench.client, {prefix + u: t for u, t in scheduled.items()})
    failures += n - len(latencies)
    return Ping(kind, label, n, rate, latencies, lag, failures, stages)
