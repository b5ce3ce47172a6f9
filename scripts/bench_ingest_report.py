"""The ingestion benchmark's printing: what it measures, each batch and latency round as it ends,
and the summary (medians over the rounds, the ratios to bare against the targets of issue 8).
"""

from __future__ import annotations

import argparse
import statistics

from scripts.bench_ingest_latency import STAGES, Ping
from scripts.bench_ingest_setup import ENTERED, PARK, PING, PINGED, SECOND
from scripts.bench_ingest_throughput import Run
from scripts.bench_measure import percentile
from scripts.common import Table

#: Targets of issue 8: ingestion at 0.9 of the bare loop or more, p99 at 1.2 of bare or less.
TARGET_RATE = 0.9
TARGET_P99 = 1.2
RUNS = Table(("batch", "<9"), ("kind", "<7"), ("events", ">6"), ("seconds", ">8.2f"), ("per s", ">8.1f"),
             ("to idle", ">8.2f"), ("per s", ">7.1f"), ("bench ms", ">9.2f"), ("worker ms", ">9.2f"),
             ("server ms", ">9.2f"), ("fail", ">5"))
PINGS = Table(("round", "<9"), ("kind", "<7"), ("events", ">6"), ("per s", ">7.1f"), ("p50 ms", ">8.0f"),
              ("p99 ms", ">8.0f"), ("max ms", ">8.0f"), ("lag ms", ">7.0f"), ("fail", ">5"))


def print_run(r: Run) -> None:
    RUNS.row(r.label, r.kind, r.events, r.seconds, r.rate, r.drained, r.sustained, r.cpu / r.events * 1000,
             r.worker_cpu / r.events * 1000, r.server_cpu / r.events * 1000, r.failures)


def print_ping(p: Ping) -> None:
    ms = [x * 1000 for x in p.latencies]
    PINGS.row(p.label, p.kind, p.events, p.rate, percentile(ms, 50), percentile(ms, 99),
              max(ms, default=float("nan")), p.lag * 1000, p.failures)


def describe(args: argparse.Namespace, warmup: int) -> None:
    print("Ingestion: events into running journeys through ingest and POST /v1/batch, against a "
          "bare signal-with-start loop")
    print(f"journeys: {PARK}: action '{ENTERED}' > action '{SECOND}' within 12h (parks); "
          f"{PING}: action '{PINGED}' > sms (outbox)")
    print(f"ingest:   ingestion.files.ingest of JSON lines, {args.ingest_concurrency} in flight, "
          f"in this process (receipts in the SQLite store, legacy ids on: as shipped)")
    print(f"http:     POST /v1/batch, {args.ingest_batch} track items a request, "
          f"all in flight (the app routes 64 items at once), httpx to create_app on uvicorn (a thread "
          f"of this process)")
    print(f"bare:     json.loads + start_workflow(start_signal='event', USE_EXISTING) of "
          f"BareParkWorkflow, {args.ingest_concurrency} at a time")
    print("workers:  the journey worker and the bare one in a process of their own; one dev server "
          "(SQLite file, WAL)")
    print(f"batches:  a warm-up of {warmup} events of each kind, then {args.ingest_rounds} "
          f"alternating rounds of {args.ingest_users}; per s = events / (first send to the last "
          f"call's return);\n          to idle: first send until the worker and the server are idle "
          f"(every entry parked), and events / that;\n          bench / worker / server ms = CPU per "
          f"event of this process (to the last return), the worker process and the dev server (to idle)")


def summary(runs: list[Run], pings: list[Ping]) -> None:
    """Print the figures and the ratios (of medians over the rounds)."""
    kinds = {"bare": "bare signal-with-start loop", "ingest": "ingest (ingestion.files)",
             "http": "POST /v1/batch", "no-sa": "ingest, search attributes off",
             "no-rcpt": "ingest, no event receipts", "no-count": "ingest, no event counts"}
    kinds = {k: v for k, v in kinds.items() if any(r.kind == k for r in runs)}
    of = {k: [r for r in runs if r.kind == k] for k in kinds}
    rates = {k: statistics.median(r.rate for r in of[k]) for k in kinds}
    sustained = {k: statistics.median(r.sustained for r in of[k]) for k in kinds}
    print()
    print(f"Summary: medians of {len(of['bare'])} alternating rounds of {runs[0].events} events each")
    print(f"  {'':<28} {'per s':>7} {'ratio':>6}  {'to idle':>7} {'ratio':>6}  {'bench':>6} "
          f"{'worker':>7} {'server':>7}  (CPU ms/event)")
    for kind, name in kinds.items():
        total = sum(r.events for r in of[kind])

        def ms(attr: str, kind: str = kind, total: int = total) -> float:
            return 1000 * sum(getattr(r, attr) for r in of[kind]) / total

        print(f"  {name:<28} {rates[kind]:>7.1f} {rates[kind] / rates['bare']:>6.2f}  "
              f"{sustained[kind]:>7.1f} {sustained[kind] / sustained['bare']:>6.2f}  {ms('cpu'):>6.2f} "
              f"{ms('worker_cpu'):>7.2f} {ms('server_cpu'):>7.2f}")
    for kind in kinds:
        if kind == "bare":
            continue
        ratio = rates[kind] / rates["bare"]
        verdict = "meets" if ratio >= TARGET_RATE else "BELOW"
        by_round = ", ".join(f"{r.rate / b.rate:.2f}" for b, r in zip(of["bare"], of[kind], strict=True))
        print(f"  ratio {kind + ' / bare':<15} {ratio:.2f}  {verdict} the target of {TARGET_RATE:.2f} "
              f"(by round: {by_round}; to idle {sustained[kind] / sustained['bare']:.2f})")
    if pings:
        lat = {k: [x * 1000 for p in pings if p.kind == k for x in p.latencies] for k in ("bare", "journey")}
        print(f"  event to first send at {pings[0].rate:.1f} events/s (paced), all rounds: journey "
              f"p50 {percentile(lat['journey'], 50):.0f} ms, p99 {percentile(lat['journey'], 99):.0f} ms; "
              f"bare p50 {percentile(lat['bare'], 50):.0f} ms, p99 {percentile(lat['bare'], 99):.0f} ms")
        p99_ratio = percentile(lat["journey"], 99) / percentile(lat["bare"], 99)
        p50_ratio = percentile(lat["journey"], 50) / percentile(lat["bare"], 50)
        verdict = "meets" if p99_ratio <= TARGET_P99 else "ABOVE"
        print(f"  latency ratio journey / bare: p50 {p50_ratio:.2f}, p99 {p99_ratio:.2f}  {verdict} "
              f"the target of p99 <= {TARGET_P99:.1f} x bare")
        print("  where it goes, p50 / p99 ms of each stage (from the histories):")
        for kind in ("bare", "journey"):
            rows = [row for p in pings if p.kind == kind for row in p.stages]
            parts = [f"{name} {percentile([r[i] * 1000 for r in rows], 50):.0f} / "
                     f"{percentile([r[i] * 1000 for r in rows], 99):.0f}" for i, name in enumerate(STAGES)]
            print(f"    {kind:<8} {', '.join(parts)}")

