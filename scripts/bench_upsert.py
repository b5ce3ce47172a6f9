"""Benchmark: what clearing JourneyNode at a journey's end costs, one more upsert per workflow.

    python -m scripts.bench_upsert [--users 200] [--rounds 3] [--delay 1] [--queries 20]

When a journey ends, its ``JourneyNode`` search attribute keeps the last node. Either the
interpreter clears it at the end (``workflow.upsert_search_attributes([JOURNEY_NODE.value_unset()])``,
one more command per journey) or users filter with ``ExecutionStatus = 'Running'``. This measures
both sides on the WAL-file dev server that ``python -m scripts.bench`` starts, workers in this process:

- keep:  ``scripts.bench_workflows.BareWorkflow`` (timer 1 s, activity, timer 1 s, activity), started
  with JourneyId, UserId and JourneyNode set, as ``route_event`` starts a journey;
- unset: ``scripts.bench_upsert_workflows.BareUnsetWorkflow``: the same, then JourneyNode unset in
  the final workflow task (a command beside the completion, not another task).

Batches of N users of each alternate (a warm-up of each first); throughput is N over the time from
the first start to the last completion. Then ``client.count_workflows`` times
``JourneyNode = '<node>' AND ExecutionStatus = 'Running'`` against ``JourneyNode = '<node>'`` over
the workflows created.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from journeys.store.database import Store
from scripts.bench_measure import (
    Batch,
    Kind,
    hiccups,
    latencies,
    machine,
    print_batch,
    print_header,
    rss_mib,
    server_pids,
    timed,
)
from scripts.bench_setup import BARE_JOURNEY_ID, bare_worker, batch_parser, production_logs, start_server
from scripts.bench_upsert_workflows import BareUnsetWorkflow
from scripts.bench_workflows import BareInput, BareWorkflow
from scripts.common import run_script, scratch_store
from workflows.models import JOURNEY_ID, JOURNEY_NODE, USER_ID

QUEUE = "bench-upsert"
NODE = "wait-followup"  # JourneyNode at the start; BareWorkflow never changes it, so it is the last
KINDS = {"keep": (BareWorkflow, "upsert-bench-keep"), "unset": (BareUnsetWorkflow, "upsert-bench-unset")}
QUERIES = {
    "node": f"JourneyNode = '{NODE}'",
    "node+running": f"JourneyNode = '{NODE}' AND ExecutionStatus = 'Running'",
}


def search_attributes(journey_id: str, user: str) -> TypedSearchAttributes:
    return TypedSearchAttributes([SearchAttributePair(JOURNEY_ID, journey_id),
                                  SearchAttributePair(USER_ID, user),
                                  SearchAttributePair(JOURNEY_NODE, NODE)])


async def batch(client: Client, store: Store, kind: str, users: Sequence[str], delay: timedelta,
                label: str) -> Batch:
    workflow: Any
    workflow, journey_id = KINDS[kind]
    started: dict[str, float] = {}

    async def one(user: str) -> bool:
        started[user] = time.time()
        handle = await client.start_workflow(workflow.run, BareInput(user_id=user, delay=delay),
                                             id=f"{kind}-{user}", task_queue=QUEUE,
                                             search_attributes=search_attributes(journey_id, user))
        return await handle.result() == 2

    seconds, cpu, server_cpu, failures = await timed(users, one)
    return Batch("wal", kind, label, len(users), seconds,
                 latencies(store, BARE_JOURNEY_ID, "first", started, delay),
                 cpu, server_cpu, failures, await hiccups(client, [f"{kind}-{u}" for u in users]))


async def run_batches(client: Client, store: Store, args: argparse.Namespace, warmup: int) -> list[Batch]:
    delay = timedelta(seconds=args.delay)
    batches: list[Batch] = []
    counter = 0

    async def run(kind: str, label: str, n: int) -> None:
        nonlocal counter
        counter += 1
        users = [f"u{counter}-{i:05d}" for i in range(n)]
        b = await batch(client, store, kind, users, delay, label)
        batches.append(b)
        print_batch(b)
        await asyncio.sleep(1)  # let the server finish its background work between batches

    async with bare_worker(client, store, QUEUE, [BareWorkflow, BareUnsetWorkflow]):
        for kind in KINDS:
            await run(kind, "warm-up", warmup)
        kinds = list(KINDS)
        for r in range(args.rounds):
            for kind in kinds if r % 2 == 0 else kinds[::-1]:
                await run(kind, f"round {r + 1}", args.users)
    return batches


async def count(client: Client, query: str) -> tuple[int, float]:
    start = time.perf_counter()
    n = (await client.count_workflows(query)).count
    return n, time.perf_counter() - start


async def time_queries(client: Client, repetitions: int) -> dict[str, tuple[int, list[float]]]:
    """Each query ``repetitions`` times, alternating (one untimed call of each first)."""
    for query in QUERIES.values():
        await count(client, query)
    results: dict[str, tuple[int, list[float]]] = {name: (0, []) for name in QUERIES}
    for r in range(repetitions):
        names = list(QUERIES) if r % 2 == 0 else list(QUERIES)[::-1]
        for name in names:
            n, seconds = await count(client, QUERIES[name])
            results[name] = (n, [*results[name][1], seconds])
    return results


async def check_unset(client: Client) -> dict[str, tuple[int, int]]:
    """Per kind: (workflows, of them still showing JourneyNode = NODE), from visibility."""
    out = {}
    for kind, (_, journey_id) in KINDS.items():
        total = (await client.count_workflows(f"JourneyId = '{journey_id}'")).count
        shown = (await client.count_workflows(f"JourneyId = '{journey_id}' AND JourneyNode = '{NODE}'")).count
        out[kind] = (total, shown)
    return out


def describe(args: argparse.Namespace, warmup: int) -> None:
    print("JourneyNode at the end: one more upsert (unset) per workflow, or ExecutionStatus = 'Running'?")
    print(machine())
    print(f"keep:     scripts.bench_workflows.BareWorkflow: timer {args.delay}s > activity > timer "
          f"{args.delay}s > activity (one outbox row each),\n          started with JourneyId, "
          f"UserId and JourneyNode='{NODE}' (start_workflow search_attributes)")
    print("unset:    scripts.bench_upsert_workflows.BareUnsetWorkflow: the same, then "
          "upsert_search_attributes([JOURNEY_NODE.value_unset()])\n          before returning (one "
          "more command in the final workflow task)")
    print("server:   one dev server on a SQLite file, journal_mode=wal, synchronous=normal "
          "(scripts.bench_setup.start_server);\n          both kinds on one worker in this process (8 "
          "activity threads, the journeys' sandbox passthrough)")
    print(f"batches:  a warm-up of {warmup} users of each kind, then {args.rounds} rounds of "
          f"{args.users} users of each kind, alternating, started at once")
    print("measures: per s = users / (first start to last completion); wrk / srv ms = CPU of this "
          "process / of the dev server,\n          per workflow; latency columns: start to the "
          "first activity's row, minus the first timer")


def summary(batches: list[Batch], queries: dict[str, tuple[int, list[float]]],
            checked: dict[str, tuple[int, int]], server_rss: float, wall: float) -> None:
    measured = [b for b in batches if b.label != "warm-up"]
    kinds = {k: Kind([b for b in measured if b.kind == k]) for k in KINDS}
    keep, unset = kinds["keep"], kinds["unset"]
    per_round = [u.rate / k.rate for k, u in zip(keep.batches, unset.batches, strict=True)]
    print()
    print(f"Summary: WAL-file dev server, {len(keep.batches)} alternating batches of each kind, "
          f"{measured[0].users} users each")
    print(f"  {'':<34} {'best':>7} {'median':>7}   rounds")
    for name, kind in kinds.items():
        rates = " ".join(f"{r:.1f}" for r in kind.rates)
        print(f"  {name + ' workflows per second':<34} {kind.best:>7.1f} {kind.median:>7.1f}   {rates}")
    print(f"  {'ratio unset / keep':<34} {unset.best / keep.best:>7.3f} "
          f"{unset.median / keep.median:>7.3f}   per round "
          f"{' '.join(f'{r:.3f}' for r in per_round)} (median {statistics.median(per_round):.3f})")
    for name, kind in kinds.items():
        print(f"  CPU per workflow, {name + ':':<6} bench process (client + worker) {kind.cpu_ms():.1f} ms, "
              f"dev server {kind.cpu_ms(server=True):.1f} ms")
    print(f"  dev server CPU per workflow, unset - keep: "
          f"{unset.cpu_ms(server=True) - keep.cpu_ms(server=True):+.1f} ms; bench process "
          f"{unset.cpu_ms() - keep.cpu_ms():+.1f} ms; dev server RSS {server_rss:.0f} MiB")
    hic = {name: sum(b.hiccups for b in kind.batches) for name, kind in kinds.items()}
    print(f"  hiccups (task timeouts/failures, activity retries): keep {hic['keep']}, unset {hic['unset']}")
    print("  visibility after the run (workflows, of them with JourneyNode still set): "
          + ", ".join(f"{k} {t} ({s})" for k, (t, s) in checked.items()))
    reps = len(next(iter(queries.values()))[1])
    print(f"  count_workflows over {sum(t for t, _ in checked.values())} closed workflows, {reps} "
          f"repetitions each, alternating:")
    for name, (n, times) in queries.items():
        ms = [t * 1000 for t in times]
        print(f"    {QUERIES[name]:<62} count {n:>5}  median {statistics.median(ms):6.2f} ms  "
              f"min {min(ms):6.2f} ms  max {max(ms):6.2f} ms")
    a, b = (statistics.median(queries[n][1]) for n in ("node", "node+running"))
    print(f"    ExecutionStatus filter: {(b - a) * 1000:+.2f} ms on the median ({b / a:.2f}x)")
    print(f"  wall time of the whole benchmark: {wall:.0f} s")


async def main(args: argparse.Namespace) -> int:
    wall0 = time.time()
    warmup = max(10, args.users // 4)
    describe(args, warmup)
    with open(os.devnull, "w") as sink, scratch_store("journeys-bench-upsert-") as (store, tmp):
        production_logs(sink)
        print()
        env = await start_server(tmp, wal_file=True)
        try:
            print_header()
            batches = await run_batches(env.client, store, args, warmup)
            server_rss = sum(rss_mib(p) for p in server_pids())
            checked = await check_unset(env.client)
            queries = await time_queries(env.client, args.queries)
        finally:
            await env.shutdown()
    summary(batches, queries, checked, server_rss, time.time() - wall0)
    failures = sum(b.failures for b in batches)
    wrong = checked["unset"][1] or checked["keep"][1] != checked["keep"][0]
    if failures or wrong:
        print(f"FAILED: {failures} workflows did not complete as expected"
              + ("; JourneyNode not as expected in visibility" if wrong else ""))
    return 1 if failures or wrong else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = batch_parser("python -m scripts.bench_upsert", __doc__, "seconds of each timer")
    parser.add_argument("--queries", type=int, default=20,
                        help="timed repetitions of each count_workflows query")
    args = parser.parse_args(argv)
    if args.users < 1 or args.rounds < 1 or args.delay < 1 or args.queries < 1:
        parser.error("--users, --rounds, --delay and --queries must be at least 1")
    return args


if __name__ == "__main__":
    run_script(main(parse_args()))
