"""Benchmark: journeys against a bare workflow of the same shape, on one Temporal dev server.

    python -m scripts.bench [--users 200] [--rounds 3] [--rounds-memory 1] [--delay 1] [--breakdown]
                          [--messages 1000] [--concurrency 50] [--delivery-rounds 3]

Both kinds run against the same ``temporal server start-dev`` in this process's care, with
their workers in this process:

- journey: a copy of ``examples/abandoned-cart.yaml`` cut to the bare shape (inaction window
  1 s > push > delay 1 s > push; the 20 h wait and the email are dropped), entered through
  ``ingestion.router.Router`` with search attributes on and the store's event receipts (which
  keep the entry event its sends name), as the HTTP API and ``ingest`` route;
- bare: ``scripts.bench_workflows.BareWorkflow``: timer 1 s, activity, timer 1 s, activity, whose
  activity claims one row in the same SQLite outbox.

The batches alternate (a warm-up of each first); throughput is N over the time from the
first start to the last completion. The server is the embedded default: a SQLite file with
``journal_mode=wal`` and ``synchronous=normal``. Then a round of each runs on an in-memory dev
server, to show what the file costs. ``--breakdown`` adds the journey without search
attributes, to show what they cost.

Then the delivery figure (``scripts.bench_delivery``, ``--delivery-rounds 0`` to skip it): webhook
messages per second through ``WebhookProvider.deliver`` against a bare httpx loop of the same
concurrency, into one loopback receiver. Then the ingestion figures (``scripts.bench_ingest``,
``--ingest-rounds 0`` to skip them): events into running journeys through ``ingest`` and
``POST /v1/batch`` against a bare signal-with-start loop, and event-to-first-send latency at a
steady half of the measured rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from ingestion.router import Router
from journeys.events import Event, workflow_id
from journeys.language.durations import format_duration
from journeys.language.loader import load_file
from journeys.language.models import Journey
from journeys.store.database import Store
from scripts.bench_delivery import add_arguments as add_delivery_arguments
from scripts.bench_delivery import measure as measure_delivery
from scripts.bench_ingest import add_arguments as add_ingest_arguments
from scripts.bench_ingest import check_arguments as check_ingest_arguments
from scripts.bench_ingest import measure as measure_ingest
from scripts.bench_measure import (
    Batch,
    costs,
    hiccups,
    latencies,
    machine,
    print_batch,
    print_header,
    report,
    rss_mib,
    server_pids,
    timed,
)
from scripts.bench_setup import BARE_JOURNEY_ID, bare_worker, batch_parser, production_logs, start_server
from scripts.bench_workflows import BareInput, BareWorkflow
from scripts.common import run_script, scratch_store
from scripts.demo import PRICE_PER_MILLION_ACTIONS, play_all
from scripts.scenarios import IPHONE
from scripts.timeline import Played
from service.costs import cost_of
from tests.helpers.support import EXAMPLES, running_worker, with_nodes
from workflows.journey import JourneyWorkflow

JOURNEY_QUEUE = "bench-journeys"
BARE_QUEUE = "bench-bare"


# --- the two workloads ---------------------------------------------------------------------

def bench_journey(delay: timedelta) -> Journey:
    """The abandoned cart, cut to the bare shape: inaction window > push > delay > push."""
    journey = load_file(EXAMPLES / "abandoned-cart.yaml").journey
    if journey is None:
        raise SystemExit("examples/abandoned-cart.yaml does not load")

    def cut(data: dict[str, Any]) -> None:
        nodes = {node["id"]: node for node in data["nodes"]}
        nodes["cart-abandoned"]["within"] = format_duration(delay)
        nodes["wait-followup"]["duration"] = format_duration(delay)
        nodes["push-followup"]["next"] = None
        data["nodes"] = [n for n in data["nodes"] if n["id"] not in ("wait-email", "email-product")]
        data["id"] = "abandoned-cart-bench"

    return with_nodes(journey, cut)


# --- a batch of each kind ------------------------------------------------------------------

async def journey_batch(client: Client, store: Store, journey: Journey, users: Sequence[str],
                        delay: timedelta, server: str, label: str, *,
                        search_attributes: bool = True) -> Batch:
    started: dict[str, float] = {}

    async def one(user: str) -> bool:
        event = Event(id=f"{user}-cart", name="Added To Cart", user_id=user, properties=IPHONE,
                      time=datetime.now(UTC))
        started[user] = time.time()
        routed = await Router(client, JOURNEY_QUEUE, search_attributes,
                              receipts=store).route_event([journey], event)
        if not routed or routed[0].action != "started":
            raise RuntimeError(f"{user}: routed {routed}")
        state = await client.get_workflow_handle_for(JourneyWorkflow.run, routed[0].workflow_id).result()
        return [m.status for m in state.messages] == ["delivered", "delivered"]

    seconds, cpu, server_cpu, failures = await timed(users, one)
    ids = [workflow_id(journey.id, u) for u in users]
    return Batch(server, "journey" if search_attributes else "j-no-sa", label, len(users), seconds,
                 latencies(store, journey.id, "push-reminder", started, delay),
                 cpu, server_cpu, failures, await hiccups(client, ids), await costs(client, ids))


async def bare_batch(client: Client, store: Store, users: Sequence[str], delay: timedelta,
                     server: str, label: str) -> Batch:
    started: dict[str, float] = {}

    async def one(user: str) -> bool:
        started[user] = time.time()
        handle = await client.start_workflow(BareWorkflow.run, BareInput(user_id=user, delay=delay),
                                             id=f"bare-{user}", task_queue=BARE_QUEUE)
        return await handle.result() == 2

    seconds, cpu, server_cpu, failures = await timed(users, one)
    ids = [f"bare-{u}" for u in users]
    return Batch(server, "bare", label, len(users), seconds,
                 latencies(store, BARE_JOURNEY_ID, "first", started, delay),
                 cpu, server_cpu, failures, await hiccups(client, ids), await costs(client, ids))


# --- a server's worth of batches -----------------------------------------------------------

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
        print_batch(batch)
        await asyncio.sleep(1)  # let the server finish its background work between batches

    async with running_worker(client, store, JOURNEY_QUEUE), \
            bare_worker(client, store, BARE_QUEUE, [BareWorkflow]):
        if warmup:
            await run("bare", "warm-up", warmup)
            await run("journey", "warm-up", warmup)
        kinds = ["bare", "journey", *(["j-no-sa"] if args.breakdown else [])]
        for r in range(rounds):
            order = kinds if r % 2 == 0 else kinds[::-1]
            for kind in order:
                await run(kind, f"round {r + 1}", args.users)
    return [b for b in batches if b.label != "warm-up"]


def _describe(journey: Journey, delay: timedelta, args: argparse.Namespace, warmup: int) -> None:
    d = format_duration(delay)
    print("Journeys against bare Temporal workflows of the same shape")
    print(machine())
    print(f"journey:  {journey.id}: examples/abandoned-cart.yaml with the inaction window and the "
          f"delay set to {d},\n          the 20h wait and the email dropped, for the bare shape "
          f"(timer > send > timer > send); entered through\n          the Router as the API routes (a "
          f"receipt claimed, keeping the event; one start, the event in its input;\n          the "
          f"receipt settled); search attributes JourneyId, UserId, JourneyNode set and upserted")
    print(f"bare:     scripts.bench_workflows.BareWorkflow: timer {d} > activity > timer {d} > "
          f"activity; each activity claims one row\n          in the same SQLite outbox (a send "
          f"also reads the profile and the outbox, renders, and marks the row kept)")
    then = "; then the same on an in-memory dev server" if args.rounds_memory else ""
    print("server:   one dev server (temporal server start-dev) on a SQLite file, journal_mode=wal, "
          "synchronous=normal:\n          the embedded default. Both kinds run on it, alternating, "
          "each with its own worker (8 activity\n          threads, same sandbox passthrough) in this "
          f"process{then}")
    print(f"batches:  a warm-up of {warmup} users of each kind, then {args.rounds} rounds of "
          f"{args.users} users of each kind, started at once")
    print(f"measures: per s = users / (first start to last completion), the two {d} "
          f"timers included; latency (p50, p99) = the first\n          outbox row's created_at - the "
          f"routing call (bare: start_workflow) - the {d} window, with every user\n          of "
          f"the batch entering at once; wrk / srv ms = CPU of this process (router and "
          f"worker) / of the dev\n          server, per workflow; hiccup = workflow tasks timed out "
          f"or failed + activity retries, read\n          from the histories afterwards\n"
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
    with open(os.devnull, "w") as sink, scratch_store("journeys-bench-") as (store, tmp):
        production_logs(sink)
        for name, rounds in (("wal", args.rounds), ("memory", args.rounds_memory)):
            if not rounds:
                continue
            print()
            env = await start_server(tmp, wal_file=name == "wal")
            print_header()
            try:
                batches = await run_server(name, env, store, journey, args, rounds, warmup)
                if name == "wal":
                    main_batches = batches
                    server_rss = sum(rss_mib(p) for p in server_pids())
                else:
                    memory = batches
            finally:
                await env.shutdown()
            failures += sum(b.failures for b in batches)
        wall = time.time() - wall0
        played, _, _ = await play_all(quiet=True)  # while the logs still go to the sink
    report(main_batches, memory, server_rss, wall)
    example_costs(played)
    if failures:
        print(f"FAILED: {failures} workflows did not complete as expected")
    delivery = ingestion = 0
    if args.delivery_rounds:
        print()
        delivery = await measure_delivery(args)
    if args.ingest_rounds:
        print()
        ingestion = await measure_ingest(args)
    return 1 if failures or delivery or ingestion else 0


def example_costs(played: list[Played]) -> None:
    """What each example journey costs a user, as ``make demo`` plays it (time-skipping server,
    so no JourneyNode upserts), against a hand-written workflow of the same shape."""
    print("\ncost per user of each example journey (make demo's scenarios; hand-written: the same "
          "shape's start, timers,\nactivity attempts and signals, without the journey's upserts and "
          f"local activities; $ at ${PRICE_PER_MILLION_ACTIONS:.0f} per million actions):")
    for p in played:
        cost = cost_of(p.history)
        print(f"  {p.scenario.user:<6} {p.journey.id:<20} {cost.actions:.0f} actions (hand-written "
              f"{cost.shape:.0f}, {cost.actions / cost.shape:.2f}x), {cost.events:.0f} events, "
              f"{cost.bytes:,.0f} bytes, ${cost.actions * PRICE_PER_MILLION_ACTIONS:,.0f} per million users")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = batch_parser("python -m scripts.bench", __doc__,
                          "seconds of each timer (the inaction window and the delay)")
    parser.add_argument("--rounds-memory", type=int, default=1, metavar="R",
                        help="rounds on an in-memory dev server afterwards, for reference (0: none)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also run the journey without search attributes (Router "
                             "search_attributes=False), to show what they cost")
    add_delivery_arguments(parser)
    add_ingest_arguments(parser)
    args = parser.parse_args(argv)
    check_ingest_arguments(parser, args)
    if args.users < 1 or args.rounds < 1 or args.delay < 1 or args.rounds_memory < 0:
        parser.error("--users, --rounds and --delay must be at least 1")
    if args.messages < 1 or args.concurrency < 1 or args.delivery_rounds < 0:
        parser.error("--messages and --concurrency must be at least 1")
    return args


if __name__ == "__main__":
    run_script(main(parse_args()))
