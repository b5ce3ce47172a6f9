"""Benchmark: events into running journeys through ``ingest`` and ``POST /v1/batch``, against a
bare loop of signal-with-start calls at the same concurrency, on one Temporal dev server.

    python -m scripts.bench_ingest [--ingest-users 600] [--ingest-rounds 3] [--ingest-concurrency 64]
                                   [--ingest-batch 100] [--ingest-breakdown] [--latency-seconds 10]
                                   [--latency-rounds 2] [--latency-rate R] [--profile]

Throughput, three kinds, each a batch of ``--ingest-users`` users, one event each:

- ingest: the JSON lines (Segment's field names) through ``ingestion.files.ingest`` in this
  process, as ``starter.py ingest`` runs it (``--ingest-concurrency`` lines in flight): the
  catalog, the event receipts in the SQLite store, one start per entry (the event in its input).
  The journey enters at an action node and parks at its next node, a 12 h wait for another event;
- http: the same events as track items of ``POST /v1/batch`` (``--ingest-batch`` items a request,
  every request of the batch in flight, at most ``--ingest-concurrency``; the app routes 64 items
  at once over all requests, each user's in order, as ingest does) to the app of ``starter.py serve``
  (``ingestion.http_api.create_app``) on uvicorn in a thread of this process, over loopback, with
  httpx (write key, keep-alive);
- bare: what a hand-written app does with the same lines: ``json.loads``, then
  ``client.start_workflow(..., start_signal="event", id_conflict_policy=USE_EXISTING)``
  (signal-with-start), ``--ingest-concurrency`` at a time (an ``asyncio.Semaphore``), of
  ``scripts.bench_ingest_workflows.BareParkWorkflow``, which parks on a condition.

``--ingest-breakdown`` adds ingest with search attributes off, ingest without event receipts
(``Router(receipts=None)``), and ingest without counting events (``JOURNEYS_BEHAVIOUR_DAYS=0``),
to show what each costs.

Per second = events / (first send to the last client call's return); to idle = events / (first
send until the worker process and the dev server are idle: every entry has parked). The
batches alternate (a warm-up of each first); between batches the worker and the server are left
to go idle.

Latency, event to first send: a journey whose entry (action) is followed at once by an sms (the
outbox provider), entered through ``Ingestion.track`` (as ingest does); against
``BareSendWorkflow``, which on signal-with-start runs one activity (one outbox row) at once. The
events arrive at a steady paced rate (open loop, not a burst), by default half the ingest rate
measured above, for ``--latency-seconds`` per kind and round. Latency = the first
ActivityTaskStarted of the workflow's history - the event's scheduled send time.

Workers: the journey worker (``tests.helpers.support.running_worker``) and the bare one, in a
worker process of their own (``python -m scripts.bench_ingest --worker``), as production runs
the worker apart from ``ingest`` and ``serve``. Server: the embedded default, a SQLite file in WAL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import statistics
import time
from collections.abc import Sequence

import httpx

from ingestion.pipeline import Ingestion
from ingestion.router import Router
from scripts.bench_ingest_latency import Ping, ping
from scripts.bench_ingest_report import PINGS, RUNS, describe, print_ping, print_run, summary
from scripts.bench_ingest_setup import (
    JOURNEY_QUEUE,
    WRITE_KEY,
    WorkerProcess,
    http_api,
    serve_worker,
    write_catalog,
)
from scripts.bench_ingest_throughput import Bench, Run, parked
from scripts.bench_measure import machine
from scripts.bench_setup import production_logs, start_server
from scripts.common import run_script, scratch_store, script_parser

# The parts: bench_ingest_setup (the catalog, the events, the worker process, the HTTP API),
# bench_ingest_throughput (the batches), bench_ingest_latency (the paced rounds), bench_ingest_report
# (the printing); bench_ingest_workflows (the bare workflows).

async def measure(args: argparse.Namespace) -> int:
    """The ingestion figures: print the batches, the latency rounds and the summary; 1 if any
    event failed or an entry is not parked where it should be."""
    if not args.ingest_rounds:
        return 0
    wall0 = time.time()
    warmup = max(10, args.ingest_users // 4)
    describe(args, warmup)
    with open(os.devnull, "w") as sink, scratch_store("journeys-bench-ingest-") as (store, tmp):
        production_logs(sink)
        folder = write_catalog(tmp / "journeys")
        store_url = str(store.engine.url)
        env = await start_server(tmp, wal_file=True)
        worker: WorkerProcess | None = None
        try:
            address = env.client.service_client.config.target_host
            worker = WorkerProcess(address, store_url)
            router = Router(env.client, JOURNEY_QUEUE, receipts=store, legacy_ids=True)
            ingestion = Ingestion(router, store, folder)
            ingestion.index()  # validated once, before any batch (the CLI: once per run)
            limits = httpx.Limits(max_connections=args.ingest_concurrency,
                                  max_keepalive_connections=args.ingest_concurrency)
            with http_api(address, store_url, folder, tmp) as url:
                async with httpx.AsyncClient(base_url=url, auth=(WRITE_KEY, ""), timeout=300,
                                             limits=limits) as http:
                    variants = {
                        "no-sa": Ingestion(Router(env.client, JOURNEY_QUEUE, search_attributes=False,
                                                  receipts=store, legacy_ids=True), store, folder),
                        "no-rcpt": Ingestion(Router(env.client, JOURNEY_QUEUE, legacy_ids=True),
                                             store, folder),
                        # What counting every event (segments' behaviour) costs ingest.
                        "no-count": Ingestion(Router(env.client, JOURNEY_QUEUE, receipts=store,
                                                     legacy_ids=True), store, folder,
                                              behaviour_days=0)} if args.ingest_breakdown else {}
                    bench = Bench(env.client, store, worker, ingestion, variants, http,
                                  args.ingest_concurrency, args.ingest_batch)
                    runs, pings, failures = await _rounds(bench, args, warmup)
                    missing = await parked(env.client, bench.totals)
        finally:
            if worker is not None:
                worker.stop()
            await env.shutdown()
    summary(runs, pings)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"  wall time: {time.time() - wall0:.0f} s; load average after it {load}")
    for line in missing:
        print(f"FAILED: {line}")
    if failures:
        print(f"FAILED: {failures} events failed")
    return 1 if failures or missing else 0


async def _rounds(bench: Bench, args: argparse.Namespace, warmup: int) -> tuple[list[Run], list[Ping], int]:
    print()
    RUNS.header()
    kinds = ["bare", "ingest", "http", *bench.variants]
    for kind in kinds:
        print_run(await bench.run(kind, "warm-up", warmup))
    runs: list[Run] = []
    for r in range(args.ingest_rounds):
        for kind in kinds if r % 2 == 0 else kinds[::-1]:
            runs.append(await bench.run(kind, f"round {r + 1}", args.ingest_users))
            print_run(runs[-1])
    if getattr(args, "profile", False):
        await profile_run(bench, args.ingest_users)
    pings: list[Ping] = []
    if args.latency_rounds:
        rate = args.latency_rate or 0.5 * statistics.median(r.sustained for r in runs if r.kind == "ingest")
        print()
        print(f"Latency: event to first send, arrivals paced at {rate:.1f} events/s "
              f"({'given' if args.latency_rate else 'half the ingest rate to idle above'}), "
              f"{args.latency_seconds:g} s per kind and round")
        PINGS.header()
        for kind in ("bare", "journey"):
            print_ping(await ping(bench, kind, "warm-up", rate, min(2.0, args.latency_seconds)))
        for r in range(args.latency_rounds):
            for kind in ("bare", "journey") if r % 2 == 0 else ("journey", "bare"):
                pings.append(await ping(bench, kind, f"round {r + 1}", rate, args.latency_seconds))
                print_ping(pings[-1])
    failures = sum(r.failures for r in runs) + sum(p.failures for p in pings)
    return runs, pings, failures


async def profile_run(bench: Bench, n: int) -> None:
    """One more ingest batch under cProfile: where this process's time goes."""
    profiler = cProfile.Profile()
    run = await bench.run("ingest", "profiled", n, profiler)
    print_run(run)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    print(out.getvalue())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("ingestion (ingest and /v1/batch against bare signal-with-start)")

    def number(flag: str, kind: type[float], default: float, metavar: str, text: str) -> None:
        group.add_argument(flag, type=kind, default=default, metavar=metavar, help=text)

    number("--ingest-users", int, 600, "N", "events (users) per batch")
    number("--ingest-rounds", int, 3, "R", "alternating rounds of each kind (0: no ingestion figure)")
    number("--ingest-concurrency", int, 64, "C", "lines (ingest), requests (http), calls (bare) in flight")
    number("--ingest-batch", int, 100, "B", "track items per POST /v1/batch")
    group.add_argument("--ingest-breakdown", action="store_true",
                       help="also ingest with search attributes off, and without event receipts, "
                            "to show what each costs")
    number("--latency-seconds", float, 10.0, "S", "seconds of paced arrivals per kind and latency round")
    number("--latency-rounds", int, 2, "R", "alternating latency rounds of each kind (0: none)")
    number("--latency-rate", float, 0.0, "PER_S",
           "arrivals per second (default: half the ingest rate to idle measured before)")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if min(args.ingest_users, args.ingest_concurrency, args.ingest_batch) < 1 \
            or args.ingest_rounds < 0 or args.latency_rounds < 0 or args.latency_seconds <= 0 \
            or args.latency_rate < 0:
        parser.error("--ingest-users, --ingest-concurrency and --ingest-batch must be at least 1, "
                     "--latency-seconds above 0")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = script_parser("python -m scripts.bench_ingest", __doc__)
    add_arguments(parser)
    parser.add_argument("--profile", action="store_true",
                        help="one more ingest batch under cProfile, its top functions printed")
    parser.add_argument("--worker", nargs=2, metavar=("ADDRESS", "STORE_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    if args.ingest_rounds < 1 and not args.worker:
        parser.error("--ingest-rounds must be at least 1")
    return args


async def main(args: argparse.Namespace) -> int:
    print(machine())
    return await measure(args)


def _main(args: argparse.Namespace) -> None:
    if args.worker:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_worker(*args.worker))
        return
    run_script(main(args))


if __name__ == "__main__":
    _main(parse_args())
