"""The product page's scenarios for a few demo users, on the real Temporal code path.

    python -m tests.demo

One time-skipping Temporal test server, a worker running the real journey workflow and
activities, a SQLite store in a temporary directory, and the journeys of ``examples/``. Every
event goes through ``workflows.router.route_event``. Delays are durable timers that the server
skips over, so a 15 h delay is 15 h of workflow time and not 15 h of yours. Each user's
timeline is read back from the workflow history (times, timer lengths) and from the outbox
(the messages as rendered). The demo checks what it shows and exits 1 if a scenario does not
come out as the product page says.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table
from rich.text import Text
from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment

from activities import build_activities
from activities.models import (
    ResolveDateInput,
    ResolveDateResult,
    SendMessageInput,
    SendResult,
    UpdateProfileInput,
    UpdateProfileResult,
)
from journeys.durations import format_duration
from journeys.events import Event
from journeys.loader import journey_files, load_file
from journeys.logs import configure_logging
from journeys.models import ONLINE_CHANNELS, Journey, Node
from journeys.store import OutboxRow, Store
from workflows.journey import JourneyWorkflow
from workflows.models import JourneyInput, JourneyState
from workflows.router import route_event
from workflows.runtime import binary, journey_worker

STARTED = time.monotonic()
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FILES: dict[str, str] = {}  # journey id -> its file
QUEUE = "demo"
T = TypeVar("T")
console = Console(highlight=False, soft_wrap=True,
                  width=max(100, shutil.get_terminal_size((120, 40)).columns))

IPHONE = {"product_name": "iPhone 14", "product_image": "https://shop.example/img/iphone-14.png",
          "price": 799, "currency": "USD", "product_url": "https://shop.example/p/iphone-14"}


# --- the scenarios -------------------------------------------------------------------------

@dataclass
class Later:
    """An event the user sends ``at`` this much workflow time after entering."""

    at: timedelta
    name: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    title: str
    journey_id: str
    user: str
    profile: dict[str, Any]
    event: str
    properties: dict[str, Any] | Callable[[datetime], dict[str, Any]]  # or made at entry time
    later: list[Later] = field(default_factory=list)
    #: Each delivered message: (node, personalization event, workflow time after entry or None).
    expect: list[tuple[str, str | None, timedelta | None]] = field(default_factory=list)
    expect_status: str = "finished"
    expect_local_time: str | None = None  # every send at this local time of day (date/time nodes)


def _flight(entered: datetime) -> dict[str, Any]:
    """A flight three days after entry (workflow time), at 14:30 in the user's timezone."""
    day = (entered.astimezone(ZoneInfo("America/Los_Angeles")) + timedelta(days=3)).date()
    return {"destination": "Lisbon", "departure_at": f"{day.isoformat()}T14:30",
            "booking_ref": "TK4821"}


def scenarios() -> list[Scenario]:
    h = timedelta(hours=1)
    return [
        Scenario("Abandoned cart: adds an iPhone 14 to the cart and does not buy",
                 "abandoned-cart", "alice", {"first_name": "Alice", "timezone": "Europe/Berlin"},
                 "Added To Cart", IPHONE,
                 expect=[("push-reminder", "Added To Cart", 1 * h),
                         ("push-followup", "Added To Cart", 5 * h),
                         ("email-product", "Added To Cart", 25 * h)]),
        Scenario("Abandoned cart: the same journey, but the user buys within the hour",
                 "abandoned-cart", "bob", {"first_name": "Bob", "timezone": "America/New_York"},
                 "Added To Cart", IPHONE,
                 later=[Later(timedelta(minutes=20), "Charged", {"amount": 799, "currency": "USD"})],
                 expect=[], expect_status="exited"),
        Scenario("Engagement nodes with 15-hour delays",
                 "delays-15h", "carol", {"first_name": "Carol", "timezone": "Asia/Kolkata"},
                 "Added To Cart",
                 {"product_name": "AirPods Pro", "product_image": "https://shop.example/img/airpods.png",
                  "price": 249, "currency": "USD", "product_url": "https://shop.example/p/airpods-pro"},
                 expect=[("push-reminder", "Added To Cart", 15 * h),
                         ("email-product", "Added To Cart", 30 * h)]),
        Scenario("A controller node (profile update) between two engagement nodes",
                 "controller-between", "dave", {"first_name": "Dave", "timezone": "Europe/London"},
                 "Added To Cart",
                 {"product_name": "MacBook Air", "product_image": "https://shop.example/img/mba.png",
                  "price": 1199, "currency": "USD", "product_url": "https://shop.example/p/macbook-air"},
                 expect=[("push-reminder", "Added To Cart", 15 * h),
                         ("email-product", "Added To Cart", 30 * h)]),
        Scenario("Two action nodes: a second event arrives mid-journey",
                 "two-action-nodes", "erin", {"first_name": "Erin", "timezone": "Australia/Sydney"},
                 "Viewed Product",
                 {"product_name": "Galaxy S24", "product_url": "https://shop.example/p/galaxy-s24",
                  "category": "phones"},
                 later=[Later(3 * h, "Added To Wishlist",
                              {"product_name": "Pixel 9", "price": 899,
                               "product_url": "https://shop.example/p/pixel-9"})],
                 expect=[("push-1", "Viewed Product", timedelta(0)),
                         ("push-2", "Viewed Product", timedelta(0)),
                         ("push-3", "Added To Wishlist", 3 * h),
                         ("email-4", "Added To Wishlist", 3 * h)]),
        Scenario("Date/time: the day before the flight, at 09:00 in the user's timezone",
                 "flight-reminder", "frank",
                 {"first_name": "Frank", "timezone": "America/Los_Angeles"},
                 "Flight Booked", _flight,
                 expect=[("push-tomorrow", "Flight Booked", None),
                         ("sms-tomorrow", "Flight Booked", None)],
                 expect_local_time="09:00"),
        Scenario("Inaction: signed up, did not complete the profile within a day",
                 "onboarding-inaction", "grace", {"first_name": "Grace", "timezone": "Europe/Paris"},
                 "Signed Up", {"plan": "premium", "referrer": "a-friend"},
                 expect=[("push-nudge", "Signed Up", 24 * h),
                         ("inbox-nudge", "Signed Up", 24 * h)]),
    ]


# --- running them --------------------------------------------------------------------------

@dataclass
class Played:
    scenario: Scenario
    journey: Journey
    state: JourneyState
    history: list[HistoryEvent]
    outbox: list[OutboxRow]
    wall: float
    problems: list[str] = field(default_factory=list)

    @property
    def span(self) -> timedelta:
        return _time(self.history[-1]) - _time(self.history[0])


class Demo:
    def __init__(self, env: WorkflowEnvironment, store: Store, journeys: dict[str, Journey]) -> None:
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
        routed = await route_event(self.client, [journey], event, QUEUE, search_attributes=False)
        if not routed:
            raise RuntimeError(f"{event.name} of {event.user_id} reached no journey")
        return routed[0].workflow_id

    async def play(self, sc: Scenario) -> Played:
        wall0 = time.monotonic()
        journey = self.journeys[sc.journey_id]
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
        return Played(sc, journey, state, history, outbox, time.monotonic() - wall0)


# --- the timeline --------------------------------------------------------------------------

def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


def _offset(delta: timedelta) -> str:
    seconds = round(delta.total_seconds())
    hours, rest = divmod(abs(seconds), 3600)
    return f"{'-' if seconds < 0 else '+'}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def _length(delta: timedelta) -> str:
    """A timer's length: ``15h`` when whole, else hours, minutes and seconds."""
    if delta.total_seconds() == int(delta.total_seconds()):
        exact = format_duration(delta)
        if not exact.endswith("s") or delta < timedelta(minutes=1):
            return exact
    return _offset(delta).lstrip("+")


def _props(properties: dict[str, Any], width: int = 90) -> str:
    text = json.dumps(properties, ensure_ascii=False)
    return text if len(text) <= width else text[:width - 1] + "…"


async def _decode(payloads: Payloads, kind: type[T]) -> T:
    [value] = await pydantic_data_converter.decode(list(payloads.payloads), [kind])
    return value


MAIN_FIELD = ("body", "text", "subject")


@dataclass
class Timeline:
    played: Played
    tz: ZoneInfo
    lines: list[tuple[datetime, str, Text]] = field(default_factory=list)

    def add(self, at: datetime, kind: str, text: Text | str, style: str = "") -> None:
        self.lines.append((at, kind, text if isinstance(text, Text) else Text(text, style=style)))

    def local(self, at: datetime) -> str:
        return at.astimezone(self.tz).strftime("%a %d %b %H:%M %Z")


def _may_wait(node: Node, journey: Journey) -> bool:
    """Can this node start a timer? (An entry action node has nothing to wait for.)"""
    if node.type == "action":
        return node.id != journey.entry
    return node.type in ("delay", "inaction", "date_time")


async def timeline(played: Played) -> Timeline:
    """Read the journey back from its history: entry, waits with their lengths, sends, exit."""
    sc, journey = played.scenario, played.journey
    tl = Timeline(played, ZoneInfo(str(sc.profile.get("timezone", "UTC"))))
    nodes = {n.id: n for n in journey.nodes}
    path = played.state.path
    rows = {r.node_id: r for r in played.outbox}
    cursor, used = 0, set()
    scheduled: dict[int, tuple[HistoryEvent, str, Any]] = {}
    entry_id = None
    for e in played.history:
        at, t = _time(e), e.event_type
        if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            start = await _decode(e.workflow_execution_started_event_attributes.input, JourneyInput)
            ev = start.entry_event
            entry_id = ev.id if ev else None
            tl.add(at, "entry", Text.assemble(
                (f"{ev.name if ev else 'profile date'} ", "bold"), _props(ev.properties if ev else {}),
                (f"  at {journey.entry}", "dim")))
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attrs = e.workflow_execution_signaled_event_attributes
            ev = await _decode(attrs.input, Event)
            if ev.id != entry_id:
                tl.add(at, "event", Text.assemble((f"{ev.name} ", "bold"), _props(ev.properties),
                                                  ("  (signal to the running journey)", "dim")))
        elif t == EventType.EVENT_TYPE_TIMER_STARTED:
            length = e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
            node_id = next((p for i, p in enumerate(path) if i >= cursor and p not in used
                            and _may_wait(nodes[p], journey)), "?")
            if node_id in path:
                cursor = path.index(node_id, cursor)
                used.add(node_id)
            node = nodes.get(node_id)
            until = f", until {_offset(at + length - _time(played.history[0]))}"
            ntype: str = node.type if node else ""
            before = "at most " if ntype == "action" else ""
            after = {"inaction": f" without '{getattr(node, 'not_event', '')}'",
                     "action": f" for '{getattr(node, 'event', '')}'"}.get(ntype, "")
            tl.add(at, "delay" if ntype == "delay" else "wait", Text.assemble(
                before, (_length(length), "bold"), f"{after} ({node_id})", (until, "dim")))
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            sched = e.activity_task_scheduled_event_attributes
            kind = sched.activity_type.name
            inputs: dict[str, type[Any]] = {"send_message": SendMessageInput,
                                            "update_profile": UpdateProfileInput,
                                            "resolve_date": ResolveDateInput}
            decoded = await _decode(sched.input, inputs[kind]) if kind in inputs else None
            anchor = getattr(decoded, "node_id", None)
            if anchor in path[cursor:]:
                cursor = path.index(anchor, cursor)
            scheduled[e.event_id] = (e, kind, decoded)
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs_c = e.activity_task_completed_event_attributes
            first, kind, decoded = scheduled[attrs_c.scheduled_event_id]
            at = _time(first)
            if kind == "send_message":
                result = await _decode(attrs_c.result, SendResult)
                _send_line(tl, at, decoded, result, rows.get(decoded.node_id))
            elif kind == "update_profile":
                written = await _decode(attrs_c.result, UpdateProfileResult)
                text = ", ".join(f"{k} = {v!r}" for k, v in written.written.items()) or "nothing"
                tl.add(at, "profile", Text.assemble(f"{decoded.node_id}: set ", (text, "bold"),
                                                    *([(f"; skipped {written.skipped}", "red")]
                                                      if written.skipped else [])))
            elif kind == "resolve_date":
                resolved = await _decode(attrs_c.result, ResolveDateResult)
                moment = resolved.moment
                tl.add(at, "date", f"fires at {tl.local(moment)} ({moment:%Y-%m-%d %H:%M} UTC)"
                       if moment else f"no date: {resolved.reason}")
            elif kind == "choose_branch":
                branch = await _decode(attrs_c.result, str)
                tl.add(at, "split", f"takes {branch}")
        elif t in (EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED, EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT):
            tl.add(at, "retry", "an activity attempt failed; Temporal retries it", style="red")
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            state = played.state
            how = f"exited: {state.exit_reason}" if state.exit_reason else "finished: end of the journey"
            goals = f"; goals reached: {', '.join(state.goals_reached)}" if state.goals_reached else ""
            tl.add(at, "exit", Text.assemble((how, "bold"), (f"{goals}; path {' > '.join(state.path)}",
                                                             "dim")))
        elif t in (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
                   EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
                   EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT):
            tl.add(at, "exit", f"workflow ended badly: {EventType.Name(t)}", style="red")
    return tl


def _send_line(tl: Timeline, at: datetime, sent: SendMessageInput, result: SendResult,
               row: OutboxRow | None) -> None:
    content = row.content if row else result.content
    channel = sent.channel.value
    if result.status != "delivered":
        tl.add(at, channel, Text.assemble(f"{sent.node_id}: ", (f"not sent: {result.reason}", "red")))
        return
    main = next((f for f in MAIN_FIELD if f in content), next(iter(content), ""))
    if sent.channel in ONLINE_CHANNELS:  # rendered in the app: no event personalization there
        event = "  [online channel: profile only]"
    else:
        event = f"  [{sent.event.name}]" if sent.event else "  [no event]"
    tl.add(at, channel, Text.assemble(f"{sent.node_id}: ", (content.get(main, ""), "bold green"),
                                      (event, "dim")))
    for name, value in content.items():
        if name != main:
            value = " ".join(value.split())
            value = value if len(value) <= 100 else value[:99] + "…"
            tl.lines.append((at, "", Text(f"    {name}: {value}", style="dim")))


STYLE = {"entry": "cyan", "event": "cyan", "delay": "yellow", "wait": "yellow", "exit": "magenta",
         "profile": "blue", "date": "blue", "split": "blue", "retry": "red"}


def show(tl: Timeline) -> None:
    played = tl.played
    sc = played.scenario
    start = _time(played.history[0])
    profile = ", ".join(f"{k}={v}" for k, v in sc.profile.items())
    console.print()
    console.print(Text.assemble((f"{sc.user}", "bold"), f" · {sc.title}"))
    console.print(Text(f"  journey {played.journey.id} ({FILES.get(played.journey.id, '?')}) · "
                       f"profile {profile} · entered {start:%Y-%m-%d %H:%M:%S} UTC "
                       f"(workflow time)", style="dim"))
    for at, kind, text in tl.lines:
        if not kind:
            console.print(Text.assemble(" " * 43, text))
            continue
        console.print(Text.assemble(
            ("  " + _offset(at - start), "bold"), (f"  {tl.local(at):<22}", "dim"),
            (f"{kind:<10}", STYLE.get(kind, "green")), text))
    for problem in played.problems:
        console.print(Text(f"  ✗ {problem}", style="bold red"))


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
    if [r.node_id for r in played.outbox if r.status == "delivered"] != [n for n, _ in wanted]:
        problems.append(f"outbox {[(r.node_id, r.status) for r in played.outbox]}")
    start = _time(played.history[0])
    sends = {}
    for e in played.history:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = e.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == "send_message":
                sends[json.loads(attrs.input.payloads[0].data)["node_id"]] = _time(e)
    tz = ZoneInfo(str(sc.profile.get("timezone", "UTC")))
    for node, _, offset in sc.expect:
        if node not in sends:
            continue
        if offset is not None and abs(sends[node] - start - offset) > timedelta(seconds=5):
            problems.append(f"{node} sent at {_offset(sends[node] - start)}, expected {_offset(offset)}")
        local = f"{sends[node].astimezone(tz):%H:%M}"
        if sc.expect_local_time and local != sc.expect_local_time:
            problems.append(f"{node} sent at {local} local time, expected {sc.expect_local_time}")
    return problems


# --- main ----------------------------------------------------------------------------------

def load_journeys() -> dict[str, Journey]:
    journeys: dict[str, Journey] = {}
    for path in journey_files([EXAMPLES]):
        loaded = load_file(path)
        if loaded.journey is None:
            raise SystemExit(f"{path}: {'; '.join(str(p) for p in loaded.problems)}")
        journeys[loaded.journey.id] = loaded.journey
        FILES[loaded.journey.id] = f"{EXAMPLES.name}/{path.name}"
    return journeys


def summary(played: list[Played], wall: float, clock: timedelta) -> None:
    table = Table(title="Summary", title_justify="left", show_edge=False, pad_edge=False)
    for column in ("user", "journey", "sent", "status", "workflow time", "wall s", "check"):
        table.add_column(column, justify="right" if column in ("sent", "wall s") else "left")
    for p in played:
        sent = sum(1 for m in p.state.messages if m.status == "delivered")
        table.add_row(p.scenario.user, p.journey.id, str(sent), p.state.exit_reason or p.state.status,
                      _offset(p.span), f"{p.wall:.2f}", "ok" if not p.problems else "FAILED")
    console.print()
    console.print(table)
    covered = sum((p.span for p in played), timedelta(0))
    console.print()
    console.print(f"{len(played)} users, {sum(len(p.state.messages) for p in played)} messages, "
                  f"{covered.total_seconds() / 3600:.1f} hours of workflow time covered "
                  f"({_length(covered)}; the test server's clock moved {_offset(clock)}) "
                  f"in {wall:.1f} s of wall-clock time")


def _wall() -> float:
    """Seconds since this process started (imports included), from /proc when it can."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic() - STARTED


def quiet_logs() -> None:
    """The activities log every send; here the timelines say it: warnings only, on stderr."""
    configure_logging(sys.stderr, logging.WARNING)


def quiet_runtime() -> Runtime:
    """The default runtime, without the core's warnings about the test server's capabilities."""
    return Runtime(telemetry=TelemetryConfig(
        logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))))


async def main() -> int:
    quiet_logs()
    journeys = load_journeys()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, runtime=quiet_runtime(),
        test_server_existing_path=binary("temporal-test-server"))
    played: list[Played] = []
    try:
        with tempfile.TemporaryDirectory(prefix="journeys-demo-") as tmp, \
                ThreadPoolExecutor(8) as executor:
            store = Store(f"sqlite:///{Path(tmp) / 'journeys.db'}")
            clock0 = await env.get_current_time()
            console.print(Text.assemble(
                ("Journeys on Temporal: the product page's scenarios\n", "bold"),
                (f"time-skipping test server; workflow clock starts at {clock0:%Y-%m-%d %H:%M:%S} UTC;"
                 " times below are workflow time after entry, then the user's local time", "dim")))
            demo = Demo(env, store, journeys)
            async with journey_worker(env.client, QUEUE, build_activities(store), executor):
                for sc in scenarios():
                    result = await demo.play(sc)
                    result.problems = check(result)
                    show(await timeline(result))
                    played.append(result)
            clock = await env.get_current_time() - clock0
            store.engine.dispose()
    finally:
        await env.shutdown()
    summary(played, _wall(), clock)
    failed = [p.scenario.user for p in played if p.problems]
    if failed:
        console.print(Text(f"FAILED: {', '.join(failed)}", style="bold red"))
    return 1 if failed else 0


if __name__ == "__main__":
    code = 1
    try:
        code = asyncio.run(main())
    except KeyboardInterrupt:
        code = 130
    except SystemExit as exc:
        print(exc, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal client's Rust threads can abort the interpreter at exit (sdk-python #300).
    os._exit(code)
