"""``starter.py audience JOURNEY``: an audience journey's schedule and its occurrences; how many
users its segment matches now (``--count``); pause, resume, trigger now, cancel a run."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from temporalio.client import Client, ScheduleDescription, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from activities.models import AudienceCounts
from connection import client_for
from ingestion.audiences import audience_of, schedule_id
from journeys.audience import segment
from journeys.inputs import printable
from journeys.language.models import Journey
from journeys.language.problems import UsageError
from journeys.settings import Settings
from journeys.store.database import Store
from journeys.validation.catalog import catalog
from workflows.audience import AudienceWorkflow

#: Occurrences shown, newest first.
SHOWN = 5


def _journey(args: argparse.Namespace, settings: Settings) -> Journey:
    found = catalog(args.journeys or settings.journeys_dir)
    journey = next((j for j in found.journeys if j.id == args.journey), None)
    if journey is None:
        raise UsageError(found.why_not(args.journey))
    if audience_of(journey) is None:
        raise UsageError(f"journey '{printable(args.journey)}' is no audience journey: its entry "
                         f"'{journey.entry}' is no segment node")
    return journey


async def audience_command(args: argparse.Namespace, settings: Settings) -> int:
    journey = _journey(args, settings)
    node = audience_of(journey)
    assert node is not None
    if args.count:
        store = Store(settings.store_url)
        try:
            n, seconds = segment.count(store, node)
        finally:
            store.engine.dispose()
        if args.json:
            print(json.dumps({"journey_id": journey.id, "matching": n, "seconds": round(seconds, 4)}))
        else:
            print(f"{n} user(s) match the segment of '{journey.id}' now (the query took {seconds:.3f} s)")
        return 0
    client = await client_for(settings)
    handle = client.get_schedule_handle(schedule_id(journey.id))
    try:
        if args.pause:
            await handle.pause(note="paused with starter.py audience --pause")
        elif args.resume:
            await handle.unpause(note="resumed with starter.py audience --resume")
        elif args.trigger:
            await handle.trigger()
        described = await handle.describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        raise UsageError(f"journey '{journey.id}' has no schedule yet: the worker makes it when it "
                         "starts, or when it reads the changed catalog") from None
    if args.cancel:
        cancelled = await _cancel(client, described)
        print(f"cancelled {cancelled} running occurrence(s) of '{journey.id}' (users it entered "
              "go on)" if cancelled else f"no occurrence of '{journey.id}' is running",
              file=sys.stderr)
    shown = await occurrences(client, described)
    if args.json:
        print(json.dumps({"journey_id": journey.id, "paused": described.schedule.state.paused,
                          "next": [t.isoformat() for t in described.info.next_action_times[:3]],
                          "occurrences": shown}, indent=2))
        return 0
    state = "paused" if described.schedule.state.paused else "active"
    upcoming = ", ".join(f"{t:%Y-%m-%d %H:%M} UTC" for t in described.info.next_action_times[:3])
    print(f"audience journey '{journey.id}': schedule {state}; next: {upcoming or 'none'}")
    for o in shown:
        c = o["counts"]
        print(f"  {o['fired'] or '?':<25} {o['status']:<10} matched {c['matched']}, started "
              f"{c['started']}, already in {c['already_in']}, skipped {c['skipped']}  ({o['workflow_id']})")
    return 0


async def occurrences(client: Client, described: ScheduleDescription) -> list[dict[str, Any]]:
    """The newest occurrences: each one's workflow, status, and counts (a query of a running
    one, the result of one that completed)."""
    found: list[dict[str, Any]] = []
    for action in reversed(described.info.recent_actions[-SHOWN:]):
        started = action.action
        wid = getattr(started, "workflow_id", None)
        if wid is None:
            continue
        status, counts = await _occurrence(client, wid, getattr(started, "first_execution_run_id", None))
        found.append({"workflow_id": wid, "fired": action.scheduled_at.isoformat(), "status": status,
                      "counts": counts.model_dump()})
    return found


async def _occurrence(client: Client, wid: str, first_run: str | None) -> tuple[str, AudienceCounts]:
    """An occurrence's status and counts. Its workflow id holds the second it fired (Temporal
    keeps whole seconds), so two occurrences fired in one second (two triggers) share it: each is
    its own chain of runs (it continues as new), known by its first run."""
    latest = client.get_workflow_handle_for(AudienceWorkflow.run, wid)
    try:
        info = await latest.describe()
        if first_run and info.raw_description.workflow_execution_info.first_run_id not in ("", first_run):
            # A later occurrence took the id: this one's chain ended before it began.
            chain = client.get_workflow_handle_for(AudienceWorkflow.run, wid, run_id=first_run)
            return "completed", await chain.result()
        status = info.status.name.lower() if info.status else "unknown"
        if info.status == WorkflowExecutionStatus.RUNNING:
            return status, await latest.query(AudienceWorkflow.progress)
        if info.status == WorkflowExecutionStatus.COMPLETED:
            return status, await latest.result()
        return status, AudienceCounts()
    except (RPCError, WorkflowFailureError) as exc:
        return ("failed" if isinstance(exc, WorkflowFailureError) else "unknown"), AudienceCounts()


async def _cancel(client: Client, described: ScheduleDescription) -> int:
    cancelled = 0
    for running in described.info.running_actions:
        wid = getattr(running, "workflow_id", None)
        if wid is None:
            continue
        await client.get_workflow_handle(wid).cancel()
        cancelled += 1
    return cancelled
