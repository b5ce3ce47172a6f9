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
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from journeys.events import workflow_id
from scripts.bench_measure import machine, rss_mib
from scripts.common import cpu_seconds, run_script, script_parser
from scripts.drill_parts import (
    CLOSED,
    ENTER,
    EXIT,
    JOURNEY_ID,
    PARKED,
    PING,
    Drill,
    DrillError,
    Report,
    children_cpu,
    files_bytes,
    mib,
    running,
)


def user(i: int) -> str:
    return f"drill-{i:06d}"


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

    async def so_far() -> str:
        return f"{await drill.count(PARKED)} parked" + (", ingest running" if ingest.poll() is None else "")

    await drill.until(f"{n} users parked", parked, timeout=60 + n / 5, progress=so_far)
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
    once = len(rows) == len(pinged) and users == set(pinged)
    report.check("pings", once and statuses in (["delivered"], ["kept"]),
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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = script_parser("python -m scripts.drill", __doc__)
    parser.add_argument("--users", type=int, default=20000, help="users who enter and park (default 20000)")
    parser.add_argument("--exits", type=int, default=1000, help="of them, users who exit (default 1000)")
    parser.add_argument("--pings", type=int, default=1000, help="of the others, users pinged (default 1000)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="starter.py ingest --concurrency (default 64)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run_script(main(parse_args()))
