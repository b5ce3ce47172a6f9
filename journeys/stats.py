"""A journey's funnel from the store: entries (counted where they start), messages by status per
node (the outbox), conversions and time-outs per node (the outcomes), the IntelliNODE paths that
converted, and the conversion rate against the control group with the lift.

``waiting`` (users at each wait node now) comes from Temporal's visibility, which the caller asks.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from journeys.models import Journey
from journeys.store import Store, entries, outbox, outcomes


class NodeStats(BaseModel):
    node_id: str
    type: str
    waiting_now: int | None = None  # None: visibility was not asked, or could not answer
    messages: dict[str, int] = Field(default_factory=dict)  # by status
    conversions: int = 0  # entries that converted while at this node (control group included)
    timed_out: int = 0


class Group(BaseModel):
    entered: int = 0
    converted: int = 0

    @property
    def rate(self) -> float | None:
        return self.converted / self.entered if self.entered else None


class Lift(BaseModel):
    """Treatment's conversion rate minus the control group's, with a 95 % interval (normal)."""

    difference: float
    low: float
    high: float
    relative: float | None  # the difference over the control group's rate


class JourneyStats(BaseModel):
    journey_id: str
    goals: list[str]
    entered: int
    treatment: Group  # the users who were messaged
    control: Group  # the control group (control_percent), not messaged
    lift: Lift | None
    timed_out: int
    nodes: list[NodeStats]
    paths: dict[str, int] = Field(default_factory=dict)  # "node: path" -> conversions


def journey_stats(store: Store, journey: Journey, waiting: Mapping[str, int] | None = None) -> JourneyStats:
    with store.engine.connect() as conn:
        groups: dict[bool, int] = {bool(held): n for held, n in conn.execute(
            select(entries.c.held_out, func.count()).where(entries.c.journey_id == journey.id)
            .group_by(entries.c.held_out)).all()}
        sent = conn.execute(select(outbox.c.node_id, outbox.c.status, func.count()).where(
            outbox.c.journey_id == journey.id).group_by(outbox.c.node_id, outbox.c.status)).all()
        # Counted by the database, not read row by row: a journey may have millions of entries.
        counted = conn.execute(select(outcomes.c.kind, outcomes.c.node_id, outcomes.c.held_out, func.count())
                               .where(outcomes.c.journey_id == journey.id)
                               .group_by(outcomes.c.kind, outcomes.c.node_id, outcomes.c.held_out)).all()
        taken = conn.execute(select(outcomes.c.paths).where(
            outcomes.c.journey_id == journey.id, outcomes.c.kind == "converted")).scalars().all()
    converted = [(node_id, bool(held), n) for kind, node_id, held, n in counted if kind == "converted"]
    treatment = Group(entered=groups.get(False, 0), converted=sum(n for _, held, n in converted if not held))
    control = Group(entered=groups.get(True, 0), converted=sum(n for _, held, n in converted if held))
    messages: dict[str, dict[str, int]] = {}
    for node_id, status, count in sent:
        messages.setdefault(node_id, {})[status] = count
    at_node: Counter[str | None] = Counter()
    timed_out: Counter[str | None] = Counter()
    for kind, node_id, _, n in counted:
        if kind in ("converted", "timed_out"):
            (at_node if kind == "converted" else timed_out)[node_id] += n
    nodes = [NodeStats(node_id=node.id, type=node.type, messages=messages.get(node.id, {}),
                       conversions=at_node[node.id], timed_out=timed_out[node.id],
                       waiting_now=None if waiting is None else waiting.get(node.id, 0))
             for node in journey.nodes]
    paths = Counter(f"{p['node']}: {p['path']}" for row in taken for p in row or [])
    return JourneyStats(journey_id=journey.id, goals=list(journey.goals),
                        entered=treatment.entered + control.entered, treatment=treatment,
                        control=control, lift=lift(treatment, control),
                        timed_out=sum(timed_out.values()), nodes=nodes, paths=dict(paths))


def lift(treatment: Group, control: Group) -> Lift | None:
    """The difference of the two rates with its 95 % normal interval; None without both groups."""
    if treatment.rate is None or control.rate is None:
        return None
    rt, rc = treatment.rate, control.rate
    spread = 1.96 * math.sqrt(rt * (1 - rt) / treatment.entered + rc * (1 - rc) / control.entered)
    difference = rt - rc
    return Lift(difference=difference, low=difference - spread, high=difference + spread,
                relative=difference / rc if rc else None)


def format_stats(stats: JourneyStats) -> str:
    """The funnel as text, one node a line."""
    def rate(group: Group) -> str:
        return f"{group.converted}/{group.entered} ({group.rate:.1%})" if group.rate is not None else "-"

    lines = [f"journey {stats.journey_id}: entered {stats.entered}, timed out {stats.timed_out}"]
    if stats.goals:
        lines.append(f"  converted ({', '.join(stats.goals)}): messaged {rate(stats.treatment)}, "
                     f"control group {rate(stats.control)}")
    else:
        lines.append("  no goals: nothing converts")
    if stats.lift:
        lift, relative = stats.lift, f", {stats.lift.relative:+.0%} relative" if stats.lift.relative else ""
        lines.append(f"  lift: {lift.difference:+.1%} (95 % interval {lift.low:+.1%} to {lift.high:+.1%}"
                     f"{relative})")
    lines.append(f"  {'node':<24} {'type':<14} {'waiting':>7} {'converted':>9} {'timed out':>9}  messages")
    for node in stats.nodes:
        waiting = "-" if node.waiting_now is None else str(node.waiting_now)
        sent = ", ".join(f"{status} {n}" for status, n in sorted(node.messages.items())) or "-"
        lines.append(f"  {node.node_id:<24} {node.type:<14} {waiting:>7} {node.conversions:>9} "
                     f"{node.timed_out:>9}  {sent}")
    for path, count in sorted(stats.paths.items()):
        lines.append(f"  path {path}: {count} converted")
    return "\n".join(lines)
