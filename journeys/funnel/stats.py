"""A journey's funnel from the store: entries (counted where they start), per node the users who
entered it and left by an exit event (journeys.funnel.counts), messages by status (the outbox),
conversions and time-outs (the outcomes); users along each edge; per IntelliNODE path its
results and current share; and the conversion rate against the control group with the lift.

``waiting`` (users at each wait node now) comes from Temporal's visibility, which the caller asks.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping

from pydantic import BaseModel, Field
from sqlalchemy import bindparam, func, select, union_all

from journeys.funnel.counts import walked
from journeys.funnel.variants import NodeVariants, format_variants, variant_stats
from journeys.inputs import printable
from journeys.language.models import EngagementNode, IntelliNode, Journey
from journeys.store import engagements, intellinode
from journeys.store.database import Store
from journeys.store.tables import entries, outbox, outcomes


class NodeStats(BaseModel):
    node_id: str
    type: str
    entered: int = 0  # entries that reached the node (journeys.funnel.counts says how it is counted)
    waiting_now: int | None = None  # None: visibility was not asked, or could not answer
    messages: dict[str, int] = Field(default_factory=dict)  # by status
    conversions: int = 0  # entries that converted while at this node (control group included)
    timed_out: int = 0
    exits: int = 0  # entries that left here by an exit event (exit_when)
    #: What users did with its messages: opened, clicked (by a person, each message once),
    #: unsubscribed, machine_opened (a mail proxy's only); and the clickers that converted.
    engagement: dict[str, int] = Field(default_factory=dict)
    clicked_converted: int = 0

    @property
    def delivered(self) -> int:
        return self.messages.get("delivered", 0) + self.messages.get("kept", 0)


class EdgeStats(BaseModel):
    source: str
    target: str
    users: int


class PathStats(BaseModel):
    """One IntelliNODE path: its results outside the control group, and its share now."""

    path: str
    next: str
    entered: int = 0
    converted: int = 0
    rate: float | None = None
    share: float  # 0..1, the allocation users who reach the node get now


class IntelliStats(BaseModel):
    node_id: str
    mode: str
    source: str  # where the shares come from: manual, a live change, a winner, learning
    paths: list[PathStats]


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
    edges: list[EdgeStats] = Field(default_factory=list)
    intellinodes: list[IntelliStats] = Field(default_factory=list)
    variants: list[NodeVariants] = Field(default_factory=list)  # nodes with content variants


# Entries per workflow id: those the routers recorded, or the entries whose end the journey
# recorded, whichever is more. A router that died between the start and its record (and whose
# event was never sent again, which would record it) is counted once its journey has ended.
_RUNS = union_all(
    select(entries.c.workflow_id.label("w"), entries.c.held_out.label("h"), func.count().label("n"))
    .where(entries.c.journey_id == bindparam("j")).group_by(entries.c.workflow_id, entries.c.held_out),
    select(outcomes.c.workflow_id, outcomes.c.held_out, func.count())
    .where(outcomes.c.journey_id == bindparam("j"), outcomes.c.kind == "ended")
    .group_by(outcomes.c.workflow_id, outcomes.c.held_out)).subquery()
_PER_WORKFLOW = select(_RUNS.c.h, func.max(_RUNS.c.n).label("m")).group_by(_RUNS.c.w, _RUNS.c.h).subquery()
_ENTERED = select(_PER_WORKFLOW.c.h, func.sum(_PER_WORKFLOW.c.m)).group_by(_PER_WORKFLOW.c.h)


def journey_stats(store: Store, journey: Journey, waiting: Mapping[str, int] | None = None) -> JourneyStats:
    with store.engine.connect() as conn:
        groups: dict[bool, int] = {bool(held): int(n) for held, n in conn.execute(
            _ENTERED, {"j": journey.id}).all()}
        sent = conn.execute(select(outbox.c.node_id, outbox.c.status, func.count()).where(
            outbox.c.journey_id == journey.id).group_by(outbox.c.node_id, outbox.c.status)).all()
        # Counted by the database, not read row by row: a journey may have millions of entries.
        counted = conn.execute(select(outcomes.c.kind, outcomes.c.node_id, outcomes.c.held_out, func.count())
                               .where(outcomes.c.journey_id == journey.id)
                               .group_by(outcomes.c.kind, outcomes.c.node_id, outcomes.c.held_out)).all()
        taken = conn.execute(select(outcomes.c.paths).where(
            outcomes.c.journey_id == journey.id, outcomes.c.kind == "converted")).scalars().all()
        converters = set(conn.execute(select(outcomes.c.user_id).where(
            outcomes.c.journey_id == journey.id, outcomes.c.kind == "converted")).scalars())
    engaged, clicked = engagements.counts(store, journey.id), engagements.clickers(store, journey.id)
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
    entered = treatment.entered + control.entered
    walks = walked(store, journey, entered, waiting)
    nodes = [NodeStats(node_id=node.id, type=node.type, messages=messages.get(node.id, {}),
                       conversions=at_node[node.id], timed_out=timed_out[node.id],
                       entered=walks.entered[node.id], exits=walks.exits[node.id],
                       waiting_now=None if waiting is None else waiting.get(node.id, 0),
                       engagement=engaged.get(node.id, {}),
                       clicked_converted=len(clicked.get(node.id, set()) & converters))
             for node in journey.nodes]
    edges = [EdgeStats(source=node.id, target=to, users=walks.edges[(node.id, to)])
             for node in journey.nodes for to in dict.fromkeys(t for _, t in node.targets())]
    paths = Counter(f"{p['node']}: {p['path']}" for row in taken for p in row or [])
    return JourneyStats(journey_id=journey.id, goals=list(journey.goals), entered=entered,
                        treatment=treatment, control=control, lift=lift(treatment, control),
                        timed_out=sum(timed_out.values()), nodes=nodes, paths=dict(paths),
                        edges=edges, intellinodes=[path_stats(store, journey, node)
                                                   for node in journey.nodes
                                                   if isinstance(node, IntelliNode)],
                        variants=[variant_stats(store, journey, node) for node in journey.nodes
                                  if isinstance(node, EngagementNode) and node.variants])


def path_stats(store: Store, journey: Journey, node: IntelliNode) -> IntelliStats:
    """Each path's entered, converted and rate (control group left out) and its current share.
    Thompson sampling's shares are drawn with a fixed seed: the same store prints the same."""
    found = {r.path: r for r in intellinode.results(store, journey.id, node.id)}
    shares, source = intellinode.shares(store, journey, node, random.Random(0))
    paths = []
    for name in intellinode.path_names(node):
        result = found.get(name, intellinode.PathResult(path=name))
        paths.append(PathStats(path=name, next=intellinode.target(node, name), entered=result.entered,
                               converted=result.converted,
                               rate=result.rate if result.entered else None, share=shares.get(name, 0.0)))
    return IntelliStats(node_id=node.id, mode=node.mode, source=source, paths=paths)


def lift(treatment: Group, control: Group) -> Lift | None:
    """The difference of the two rates with its 95 % normal interval; None without both groups."""
    if treatment.rate is None or control.rate is None:
        return None
    rt, rc = treatment.rate, control.rate
    spread = 1.96 * math.sqrt(rt * (1 - rt) / treatment.entered + rc * (1 - rc) / control.entered)
    difference = rt - rc
    return Lift(difference=difference, low=difference - spread, high=difference + spread,
                relative=difference / rc if rc else None)


def engaged_line(node: NodeStats) -> str:
    """"; opened 3 (30%), clicked 1 (10%), unsubscribed 1 (10%)": rates of the delivered."""
    if not node.engagement:
        return ""
    shown = []
    for kind in ("opened", "clicked", "unsubscribed"):
        n = node.engagement.get(kind, 0)
        shown.append(f"{kind} {n} ({n / node.delivered:.0%})" if node.delivered else f"{kind} {n}")
    if machine := node.engagement.get("machine_opened", 0):
        shown.append(f"machine opens only {machine}")
    if node.clicked_converted:
        shown.append(f"clicked and converted {node.clicked_converted}")
    return "; " + ", ".join(shown)


def format_stats(stats: JourneyStats) -> str:
    """The funnel as text, one node a line; names from data (goals, paths) escaped."""
    def rate(group: Group) -> str:
        return f"{group.converted}/{group.entered} ({group.rate:.1%})" if group.rate is not None else "-"

    lines = [f"journey {stats.journey_id}: entered {stats.entered}, timed out {stats.timed_out}"]
    if stats.goals:
        goals = ", ".join(map(printable, stats.goals))
        lines.append(f"  converted ({goals}): messaged {rate(stats.treatment)}, "
                     f"control group {rate(stats.control)}")
    else:
        lines.append("  no goals: nothing converts")
    if stats.lift:
        lift, relative = stats.lift, f", {stats.lift.relative:+.0%} relative" if stats.lift.relative else ""
        lines.append(f"  lift: {lift.difference:+.1%} (95 % interval {lift.low:+.1%} to {lift.high:+.1%}"
                     f"{relative})")
    lines.append(f"  {'node':<24} {'type':<14} {'entered':>7} {'waiting':>7} {'converted':>9} "
                 f"{'exits':>5} {'timed out':>9}  messages")
    for node in stats.nodes:
        waiting = "-" if node.waiting_now is None else str(node.waiting_now)
        sent = ", ".join(f"{status} {n}" for status, n in sorted(node.messages.items())) or "-"
        lines.append(f"  {node.node_id:<24} {node.type:<14} {node.entered:>7} {waiting:>7} "
                     f"{node.conversions:>9} {node.exits:>5} {node.timed_out:>9}  {sent}"
                     f"{engaged_line(node)}")
    for path, count in sorted(stats.paths.items()):
        lines.append(f"  path {printable(path)}: {count} converted")
    for split in stats.intellinodes:
        lines.append(f"  IntelliNODE {split.node_id} ({split.mode}; shares: {printable(split.source)}), "
                     "control group left out:")
        for p in split.paths:
            converted = "-" if p.rate is None else f"{p.rate:.1%}"
            lines.append(f"    {printable(p.path):<20} -> {p.next:<20} entered {p.entered:>6}, converted "
                         f"{p.converted:>6} ({converted}), share now {p.share:.0%}")
    for found in stats.variants:
        lines += format_variants(found)
    taken = [e for e in stats.edges if e.users]
    if taken:
        lines.append("  edges: " + ", ".join(f"{e.source} -> {e.target} {e.users}" for e in taken))
    return "\n".join(lines)
