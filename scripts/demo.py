"""The product page's scenarios for a few demo users, on the real Temporal code path.

    python -m scripts.demo

One time-skipping Temporal test server, a worker running the real journey workflow and
activities, a SQLite store in a temporary directory, and the journeys of ``examples/``. Every
event goes through ``ingestion.router.Router``. Delays are durable timers that the server
skips over, so a 15 h delay is 15 h of workflow time and not 15 h of yours. Each user's
timeline is read back from the workflow history (times, timer lengths) and from the outbox
(the messages as rendered). The demo checks what it shows and exits 1 if a scenario does not
come out as the product page says.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rich.table import Table
from rich.text import Text
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment

from connection.converter import data_converter
from ingestion.router import Router
from journeys.events import Event
from journeys.funnel.stats import format_stats, journey_stats
from journeys.language.loader import journey_files, load_file
from journeys.language.models import Journey
from journeys.store.database import Store
from scripts.common import process_seconds, run_script, scratch_store
from scripts.scenarios import Scenario, scenarios
from scripts.timeline import Played, console, event_time, length_text, offset_text, show, timeline
from service.costs import cost_of
from service.runtime import binary
from telemetry.logs import configure_logging
from tests.helpers.support import EXAMPLES, running_worker
from workflows.journey import JourneyWorkflow
from workflows.models import JourneyState

QUEUE = "demo"


# --- running the scenarios -----------------------------------------------------------------

class Demo:
    def __init__(self, env: WorkflowEnvironment, store: Store,
                 journeys: dict[str, tuple[Journey, str]]) -> None:
        self.env, self.client, self.store, self.journeys = env, env.client, store, journeys

    async def run_to_end(self, handle: WorkflowHandle[Any, JourneyState]) -> JourneyState:
        """Move workflow time to each wake-up the journey asks for, until it ends; its result.

        The server's clock moves only as far as the journey's own next timer (``next_wake`` in
        its state), with ``env.sleep``. Letting the server skip on its own while it is idle
        (``result()`` with time skipping unlocked) also fires the 10-year schedule-to-close
        timer the test server keeps for every activity without one, after the journey ends.
        """
        for _ in range(10_000):
            description = await handle.describe()
            if description.status != WorkflowExecutionStatus.RUNNING:
                return await handle.result()
            state = await handle.query(JourneyWorkflow.status)
            gap = state.next_wake - await self.env.get_current_time() if state.next_wake else None
            if gap is not None and gap > timedelta(0):
                await self.env.sleep(gap)
            else:  # a send or a workflow task under way: it takes wall-clock time, not ours
                await asyncio.sleep(0.005)
        raise TimeoutError(f"{handle.id} did not end")

    async def until_waiting(self, handle: WorkflowHandle[Any, JourneyState]) -> None:
        """Until the journey sits in a durable wait (its sends before the wait are done)."""
        for _ in range(400):
            state = await handle.query(JourneyWorkflow.status)
            if state.next_wake is not None or state.status != "running":
                return
            await asyncio.sleep(0.025)
        raise TimeoutError(f"{handle.id} never reached a wait")

    async def route(self, journey: Journey, event: Event) -> str:
        # With the store, as starter.py routes: event receipts, and entries counted for `stats`.
        router = Router(self.client, QUEUE, search_attributes=False, receipts=self.store)
        routed = await router.route_event([journey], event)
        if not routed:
            raise RuntimeError(f"{event.name} of {event.user_id} reached no journey")
        return routed[0].workflow_id

    async def play(self, sc: Scenario) -> Played:
        wall0 = time.monotonic()
        journey, file = self.journeys[sc.journey_id]
        self.store.update_profile(sc.user, sc.profile)
        entered = await self.env.get_current_time()
        properties = sc.properties(entered) if callable(sc.properties) else sc.properties
        event = Event(id=f"{sc.user}-1", name=sc.event, user_id=sc.user, properties=properties,
                      time=entered)
        wid = await self.route(journey, event)
        handle = self.client.get_workflow_handle_for(JourneyWorkflow.run, wid)
        for n, later in enumerate(sc.later, start=2):
            await self.until_waiting(handle)
            skip = entered + later.at - await self.env.get_current_time()
            if skip > timedelta(0):
                await self.env.sleep(skip)  # workflow time passes; the journey's timers stay armed
            await self.route(journey, Event(
                id=f"{sc.user}-{n}", name=later.name, user_id=sc.user, properties=later.properties,
                time=await self.env.get_current_time()))
        state = await self.run_to_end(handle)
        history = [e async for e in handle.fetch_history_events()]
        outbox = [r for r in self.store.outbox_list(user_id=sc.user) if r.journey_id == journey.id]
        kept = self.store.kept_event(journey.id, sc.user, event.id) or {}
        return Played(sc, journey, file, state, history, outbox, time.monotonic() - wall0,
                      entry_properties=kept.get("properties") or {})


# --- checks --------------------------------------------------------------------------------

def check(played: Played) -> list[str]:
    """What the product page promises for this scenario, against what Temporal did."""
    sc, state = played.scenario, played.state
    problems = []
    delivered = [(m.node_id, m.event_name) for m in state.messages if m.status == "delivered"]
    wanted = [(node, event) for node, event, _ in sc.expect]
    if delivered != wanted:
        problems.append(f"messages {delivered}, expected {wanted}")
    if state.status != sc.expect_status:
        problems.append(f"status {state.status} ({state.exit_reason}), expected {sc.expect_status}")
    # (kept: the outbox provider, the embedded default, took it in place of a vendor)
    if [r.node_id for r in played.outbox if r.status in {"delivered", "kept"}] != [n for n, _ in wanted]:
        problems.append(f"outbox {[(r.node_id, r.status) for r in played.outbox]}")
    start = event_time(played.history[0])
    sends = {}
    for e in played.history:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = e.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == "send_message":
                sends[json.loads(attrs.input.payloads[0].data)["node_id"]] = event_time(e)
    tz = ZoneInfo(str(sc.profile.get("timezone", "UTC")))
    for node, _, offset in sc.expect:
        if node not in sends:
            continue
        if offset is not None and abs(sends[node] - start - offset) > timedelta(seconds=5):
            problems.append(f"{node} sent at {offset_text(sends[node] - start)}, "
                            f"expected {offset_text(offset)}")
        local = f"{sends[node].astimezone(tz):%H:%M}"
        if sc.expect_local_time and local != sc.expect_local_time:
            problems.append(f"{node} sent at {local} local time, expected {sc.expect_local_time}")
    return problems


# --- main ----------------------------------------------------------------------------------

def load_journeys() -> dict[str, tuple[Journey, str]]:
    """Every journey of ``examples/`` by id, with its file; exits if one does not load."""
    journeys: dict[str, tuple[Journey, str]] = {}
    for path in journey_files([EXAMPLES]):
        loaded = load_file(path)
        if loaded.journey is None:
            raise SystemExit(f"{path}: {'; '.join(str(p) for p in loaded.problems)}")
        journeys[loaded.journey.id] = (loaded.journey, f"{EXAMPLES.name}/{path.name}")
    return journeys


#: Temporal Cloud's list price per million actions, first tier (temporal.io/pricing, 2026): the
#: cost column's assumption; a larger plan pays less.
PRICE_PER_MILLION_ACTIONS = 50.0


def summary(played: list[Played], wall: float, clock: timedelta) -> None:
    table = Table(title="Summary", title_justify="left", show_edge=False, pad_edge=False)
    numbers = ("sent", "wall s", "actions", "hand-written", "events", "bytes", "$ per 1M users")
    for column in ("user", "journey", "sent", "status", "workflow time", "wall s", "actions",
                   "hand-written", "events", "bytes", "$ per 1M users", "check"):
        table.add_column(column, justify="right" if column in numbers else "left")
    for p in played:
        sent = sum(1 for m in p.state.messages if m.status == "delivered")
        cost = cost_of(p.history)  # the history's billable actions, events and bytes
        table.add_row(p.scenario.user, p.journey.id, str(sent), p.state.exit_reason or p.state.status,
                      offset_text(p.span), f"{p.wall:.2f}", f"{cost.actions:.0f}",
                      f"{cost.shape:.0f} ({cost.actions / cost.shape:.2f}x)", f"{cost.events:.0f}",
                      f"{cost.bytes:,.0f}", f"{cost.actions * PRICE_PER_MILLION_ACTIONS:,.0f}",
                      "ok" if not p.problems else "FAILED")
    console.print()
    console.print(table)
    covered = sum((p.span for p in played), timedelta(0))
    console.print("actions: Temporal Cloud's billable actions of the user's history (service/costs.py; "
                  "the time-skipping server keeps no JourneyNode search attribute, so its upserts, "
                  f"one per wait, are not among them); hand-written: the actions of a workflow of "
                  f"the same shape (start, timers, activity attempts, signals) without the "
                  f"journey's bookkeeping (upserts, local activities); $ at "
                  f"${PRICE_PER_MILLION_ACTIONS:.0f} per million actions")
    for p in played:  # one line each, for tests/test_costs.py's budget
        cost = cost_of(p.history)
        print(f"cost {p.scenario.user} {p.journey.id} {cost.actions:.0f} actions "
              f"{cost.events:.0f} events {cost.bytes:.0f} bytes {cost.shape:.0f} hand-written")
    console.print()
    console.print(f"{len(played)} users, {sum(len(p.state.messages) for p in played)} messages, "
                  f"{covered.total_seconds() / 3600:.1f} hours of workflow time covered "
                  f"({length_text(covered)}; the test server's clock moved {offset_text(clock)}) "
                  f"in {wall:.1f} s of wall-clock time")


def quiet_logs() -> None:
    """The activities log every send; here the timelines say it: warnings only, on stderr."""
    configure_logging(sys.stderr, logging.WARNING)


def quiet_runtime() -> Runtime:
    """The default runtime, without the core's warnings about the test server's capabilities."""
    return Runtime(telemetry=TelemetryConfig(
        logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))))


async def play_all(*, quiet: bool = False) -> tuple[list[Played], timedelta, list[str]]:
    """Every scenario on a time-skipping server: what was played, the server clock's move, and
    each played journey's funnel (``starter.py stats``). ``quiet``: no timelines printed."""
    journeys = load_journeys()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter, runtime=quiet_runtime(),
        test_server_existing_path=binary("temporal-test-server"))
    played: list[Played] = []
    try:
        with scratch_store("journeys-demo-") as (store, _):
            clock0 = await env.get_current_time()
            if not quiet:
                console.print(Text.assemble(
                    ("Journeys on Temporal: the product page's scenarios\n", "bold"),
                    (f"time-skipping test server; workflow clock starts at {clock0:%Y-%m-%d %H:%M:%S} "
                     "UTC; times below are workflow time after entry, then the user's local time",
                     "dim")))
            demo = Demo(env, store, journeys)
            async with running_worker(env.client, store, QUEUE):
                for sc in scenarios():
                    result = await demo.play(sc)
                    result.problems = check(result)
                    if not quiet:
                        show(await timeline(result))
                    played.append(result)
            clock = await env.get_current_time() - clock0
            played_journeys = {p.journey.id: p.journey for p in played}.values()
            funnels = [format_stats(journey_stats(store, journey)) for journey in played_journeys]
    finally:
        await env.shutdown()
    return played, clock, funnels


async def main() -> int:
    quiet_logs()
    played, clock, funnels = await play_all()
    summary(played, process_seconds(), clock)
    console.print("\nstarter.py stats, for each journey played (who waits where needs a dev server: -):")
    for funnel in funnels:
        console.print(Text(funnel))
    failed = [p.scenario.user for p in played if p.problems]
    if failed:
        console.print(Text(f"FAILED: {', '.join(failed)}", style="bold red"))
    return 1 if failed else 0


if __name__ == "__main__":
    run_script(main())
