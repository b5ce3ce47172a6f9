"""A journey as a Mermaid flowchart, for the README and for reviewers; with its funnel's counts
on nodes and edges (``graph --stats``)."""

from __future__ import annotations

import re

from journeys.funnel.stats import JourneyStats, NodeStats
from journeys.language.durations import format_duration
from journeys.language.models import (
    ActionNode,
    DateTimeNode,
    DelayNode,
    EngagementNode,
    InactionNode,
    IntelliNode,
    Journey,
    Node,
    ProfileUpdateNode,
    SegmentNode,
    SplitNode,
    TriggerJourneyNode,
)

# Mermaid shapes: segments are stadiums, delays hexagons, decisions rhombi, sends rectangles.
_SHAPES = {"action": ("([", "])"), "inaction": ("([", "])"), "date_time": ("([", "])"),
           "delay": ("{{", "}}"), "split": ("{", "}"), "intellinode": ("{", "}"),
           "exit": ("((", "))"), "engagement": ("[", "]"), "profile_update": ("[/", "/]"),
           "trigger_journey": ("[[", "]]"), "segment": ("([", "])")}


def _key(node_id: str) -> str:
    """A Mermaid-safe key, distinct for distinct ids (``a-b`` and ``a_b`` do not merge)."""
    return "n_" + re.sub(r"[^A-Za-z0-9]", lambda m: f"_{ord(m.group()):02x}", node_id)


#: What a label may hold as is; anything else (quotes, HTML, ``#``, line breaks, ``|``, backticks,
#: control characters) becomes a Mermaid entity code, so that no event name or expression can
#: end a label, inject HTML or break the one-statement-a-line layout.
_SAFE = re.compile(r"[^\w .,:;/()\[\]{}+\-=*'!?$%@~^]")
_NAMED = {'"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or f"#{ord(char)};"


def _text(value: str) -> str:
    """``value`` as the inside of a quoted Mermaid label."""
    return _SAFE.sub(_escape, value)


def describe(node: Node) -> str:
    """One line saying what a node does, as a marketer would."""
    if isinstance(node, ActionNode):
        wait = f" within {format_duration(node.within)}" if node.within else ""
        return f"action: did {node.event}{wait}"
    if isinstance(node, InactionNode):
        main = f"{node.event}, " if node.event else ""
        return f"inaction: {main}not {node.not_event} within {format_duration(node.within)}"
    if isinstance(node, DateTimeNode):
        date = (f"{node.event}.{node.date_property}" if node.event
                else f"profile.{node.profile_property}")
        offset = f" {format_duration(node.offset)}" if node.offset else ""
        at = f" at {node.at}" if node.at else ""
        return f"date/time: {date}{offset}{at}"
    if isinstance(node, DelayNode):
        return f"delay {format_duration(node.duration)}"
    if isinstance(node, EngagementNode):
        quiet = node.quiet_hours
        return f"{node.channel}" + (f", quiet {quiet.start}-{quiet.end} ({quiet.action})"
                                    if quiet else "")
    if isinstance(node, ProfileUpdateNode):
        return "profile update: " + ", ".join(node.set)
    if isinstance(node, IntelliNode):
        return f"IntelliNODE ({node.mode})"
    if isinstance(node, SplitNode):
        return "split"
    if isinstance(node, TriggerJourneyNode):
        return f"enter journey {node.journey}"
    if isinstance(node, SegmentNode):
        return f"segment: {segment_words(node)}"
    return "exit"


def segment_words(node: SegmentNode) -> str:
    """A segment and its schedule in a marketer's words."""
    words = [f"{c.property} {c.rule()[0].replace('_', ' ')} {c.rule()[1]}" for c in node.profile]
    words += [f"did {c.event} {c.at_least}+ in {format_duration(c.in_last)}" for c in node.did]
    words += [f"not {c.event} in {format_duration(c.in_last)}" for c in node.did_not]
    schedule = node.schedule
    when = (f"cron {schedule.cron}" if schedule.cron else
            f"every {format_duration(schedule.every)}" + (f" at {schedule.at}" if schedule.at else "")
            if schedule.every else f"once at {schedule.at}")
    local = " local time" if schedule.local_time else ""
    return f"{', '.join(words) or 'everyone'}; {when}{local}"


def edge_label(node: Node, field: str, index: int) -> str:
    if isinstance(node, ActionNode) and node.within:
        return "did it" if field == "next" else "timed out"
    if isinstance(node, IntelliNode):
        path = node.paths[index]
        pct = f" {path.percent}%" if path.percent is not None else ""
        return f"{path.name or f'path {index + 1}'}{pct}"
    if isinstance(node, SplitNode):
        return node.branches[index].when if field.startswith("branches") else "otherwise"
    if isinstance(node, EngagementNode) and field.startswith("on_engagement."):
        return field.removeprefix("on_engagement.")  # clicked, opened, otherwise
    if isinstance(node, EngagementNode) and (node.on or node.on_engagement):
        return field.removeprefix("on.") if field.startswith("on.") else "otherwise"
    return ""


def counts(node: NodeStats) -> str:
    """A node's funnel in a line: entered, waiting, messages, conversions, exits, time-outs."""
    parts = [f"entered {node.entered}"]
    if node.waiting_now:
        parts.append(f"waiting {node.waiting_now}")
    parts += [f"{status.replace('_', ' ')} {n}" for status, n in sorted(node.messages.items())]
    parts += [f"{kind} {node.engagement[kind]}" for kind in ("opened", "clicked", "unsubscribed")
              if node.engagement.get(kind)]
    parts += [f"{what} {n}" for what, n in (("converted", node.conversions), ("exits", node.exits),
                                             ("timed out", node.timed_out)) if n]
    return ", ".join(parts)


def to_mermaid(journey: Journey, stats: JourneyStats | None = None) -> str:
    """The flowchart; with ``stats``, each node's counts and the users along each edge (every
    count goes through the same escaping as the labels)."""
    lines = ["flowchart TD"]
    by_node = {n.node_id: n for n in stats.nodes} if stats else {}
    users = {(e.source, e.target): e.users for e in stats.edges} if stats else {}
    for node in journey.nodes:
        left, right = _SHAPES[node.type]
        text = f"{_text(node.id)}<br/>{_text(describe(node))}"
        if node.id in by_node:
            text += f"<br/>{_text(counts(by_node[node.id]))}"
        lines.append(f'    {_key(node.id)}{left}"{text}"{right}')
    for node in journey.nodes:
        counted: set[str] = set()  # two fields to one node: the users on the first edge only
        for index, (field, target) in enumerate(node.targets()):
            label = edge_label(node, field, index)
            if stats and target not in counted:
                counted.add(target)
                along = f"{users.get((node.id, target), 0)} users"
                label = f"{label}, {along}" if label else along
            arrow = f' -->|"{_text(label)}"| ' if label else " --> "
            lines.append(f"    {_key(node.id)}{arrow}{_key(target)}")
    return "\n".join(lines) + "\n"
