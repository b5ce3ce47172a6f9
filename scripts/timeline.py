"""A played scenario read back from its workflow history, and printed as a timeline.

The history gives the times and the timer lengths, the activities' inputs and results what
happened at each node; the outbox gives each message as it was rendered.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.text import Text
from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from activities.models import (
    ResolveDateInput,
    ResolveDateResult,
    SendMessageInput,
    SendResult,
    UpdateProfileInput,
    UpdateProfileResult,
)
from connection.converter import data_converter
from journeys.events import Event
from journeys.language.channels import ONLINE_CHANNELS
from journeys.language.durations import format_duration
from journeys.language.models import Journey, Node
from journeys.store.database import OutboxRow
from scripts.scenarios import Scenario
from workflows.models import JourneyInput, JourneyState

T = TypeVar("T")
console = Console(highlight=False, soft_wrap=True,
                  width=max(100, shutil.get_terminal_size((120, 40)).columns))


@dataclass
class Played:
    """A scenario as Temporal ran it: the journey's result, its history and its outbox rows."""

    scenario: Scenario
    journey: Journey
    file: str  # the journey's file, as the timeline names it
    state: JourneyState
    history: list[HistoryEvent]
    outbox: list[OutboxRow]
    wall: float
    problems: list[str] = field(default_factory=list)
    #: The entry event's properties, as its receipt in the store keeps them (history holds its
    #: id, name and time only).
    entry_properties: dict[str, Any] = field(default_factory=dict)

    @property
    def span(self) -> timedelta:
        return event_time(self.history[-1]) - event_time(self.history[0])


def event_time(event: HistoryEvent) -> datetime:
    """When a history event happened, in workflow time."""
    return event.event_time.ToDatetime(tzinfo=UTC)


def offset_text(delta: timedelta) -> str:
    """A time after entry: ``+25:00:00`` (the hours go past a day)."""
    seconds = round(delta.total_seconds())
    hours, rest = divmod(abs(seconds), 3600)
    return f"{'-' if seconds < 0 else '+'}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def length_text(delta: timedelta) -> str:
    """A timer's length: ``15h`` when whole, else hours, minutes and seconds."""
    if delta.total_seconds() == int(delta.total_seconds()):
        exact = format_duration(delta)
        if not exact.endswith("s") or delta < timedelta(minutes=1):
            return exact
    return offset_text(delta).lstrip("+")


def _props(properties: dict[str, Any], width: int = 90) -> str:
    text = json.dumps(properties, ensure_ascii=False)
    return text if len(text) <= width else text[:width - 1] + "…"


async def _decode(payloads: Payloads, kind: type[T]) -> T:
    [value] = await data_converter.decode(list(payloads.payloads), [kind])
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
        at, t = event_time(e), e.event_type
        if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            start = await _decode(e.workflow_execution_started_event_attributes.input, JourneyInput)
            ev = start.entry_event
            entry_id = ev.id if ev else None
            tl.add(at, "entry", Text.assemble(
                (f"{ev.name if ev else 'profile date'} ", "bold"),
                _props((ev.properties or played.entry_properties) if ev else {}),
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
            until = f", until {offset_text(at + length - event_time(played.history[0]))}"
            ntype: str = node.type if node else ""
            before = "at most " if ntype == "action" else ""
            after = {"inaction": f" without '{getattr(node, 'not_event', '')}'",
                     "action": f" for '{getattr(node, 'event', '')}'"}.get(ntype, "")
            tl.add(at, "delay" if ntype == "delay" else "wait", Text.assemble(
                before, (length_text(length), "bold"), f"{after} ({node_id})", (until, "dim")))
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
            at = event_time(first)
            if kind == "send_message":
                result = await _decode(attrs_c.result, SendResult)
                _send_line(tl, at, decoded, result, rows.get(decoded.node_id))
            elif kind == "update_profile":
                written = await _decode(attrs_c.result, UpdateProfileResult)
                # The result names what was written; the values are the node's templates.
                names = written.properties or list(written.written)
                text = ", ".join(f"{k} = {decoded.set[k]!r}" for k in names) or "nothing"
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
    content = row.content if row else {}
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
    start = event_time(played.history[0])
    profile = ", ".join(f"{k}={v}" for k, v in sc.profile.items())
    console.print()
    console.print(Text.assemble((f"{sc.user}", "bold"), f" · {sc.title}"))
    console.print(Text(f"  journey {played.journey.id} ({played.file}) · "
                       f"profile {profile} · entered {start:%Y-%m-%d %H:%M:%S} UTC "
                       f"(workflow time)", style="dim"))
    for at, kind, text in tl.lines:
        if not kind:
            console.print(Text.assemble(" " * 43, text))
            continue
        console.print(Text.assemble(
            ("  " + offset_text(at - start), "bold"), (f"  {tl.local(at):<22}", "dim"),
            (f"{kind:<10}", STYLE.get(kind, "green")), text))
    for problem in played.problems:
        console.print(Text(f"  ✗ {problem}", style="bold red"))

