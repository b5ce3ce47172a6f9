"""Where event personalization is available: the product page's rules, checked statically.

Each path through the journey carries a *source*: the segment node that last supplied an
event (or supplied none, a profile-date entry), and the first long wait since. A template
that reads ``event`` is checked against every source that can reach its node.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

from journeys.durations import format_duration
from journeys.models import (
    ONLINE_CHANNELS,
    ActionNode,
    DateTimeNode,
    DelayNode,
    EngagementNode,
    EventSchema,
    InactionNode,
    Journey,
    Node,
    ProfileUpdateNode,
    SplitNode,
)
from journeys.personalize import EventUse, expression_event_use, message_fields, template_event_use
from journeys.rules import Finding

#: Each delay between the event's node and a message that uses it must be shorter than this.
MAX_PERSONALIZED_DELAY = timedelta(hours=24)
_FOREVER = timedelta.max


@dataclass(frozen=True)
class Source:
    supplier: str  # the segment node that set (or, for a profile date, cleared) the event
    event: str | None
    long_wait: tuple[str, str] | None = None  # (node, length): the first wait of 24h or more

    def after_wait(self, node_id: str, length: timedelta) -> Source:
        if self.event and self.long_wait is None and length >= MAX_PERSONALIZED_DELAY:
            return replace(self, long_wait=(node_id, _spell(length)))
        return self


def _spell(length: timedelta) -> str:
    return "an open-ended wait" if length == _FOREVER else format_duration(length)


def _outgoing(node: Node, incoming: frozenset[Source],
              entry: bool) -> Iterator[tuple[str, frozenset[Source]]]:
    """(target, sources) for each edge leaving ``node``."""
    own = frozenset({Source(node.id, getattr(node, "event", None))})
    if isinstance(node, ActionNode):
        for field, target in node.targets():
            if field == "next":
                yield target, own
            else:
                wait = node.within or _FOREVER
                yield target, frozenset(s.after_wait(node.id, wait) for s in incoming)
        return
    if isinstance(node, InactionNode):
        out = own if entry else frozenset(s.after_wait(node.id, node.within) for s in incoming)
    elif isinstance(node, DateTimeNode):
        if node.event:
            out = own
        elif entry:
            out = frozenset({Source(node.id, None)})
        else:
            out = frozenset(s.after_wait(node.id, _FOREVER) for s in incoming)
    elif isinstance(node, DelayNode):
        out = frozenset(s.after_wait(node.id, node.duration) for s in incoming)
    else:
        out = incoming
    for _, target in node.targets():
        yield target, out


def sources_by_node(journey: Journey) -> dict[str, frozenset[Source]]:
    """The event sources that can reach each node (the graph must be acyclic)."""
    by_id = {node.id: node for node in journey.nodes}
    reachable, todo = {journey.entry}, [journey.entry]
    while todo:
        for _, target in by_id[todo.pop()].targets():
            if target not in reachable:
                reachable.add(target)
                todo.append(target)
    indegree = dict.fromkeys(by_id, 0)
    for node_id in reachable:
        for _, target in by_id[node_id].targets():
            indegree[target] += 1
    incoming: dict[str, set[Source]] = {node_id: set() for node_id in by_id}
    ready = [journey.entry]
    done: dict[str, frozenset[Source]] = {}
    while ready:
        node_id = ready.pop()
        done[node_id] = frozenset(incoming[node_id])
        for target, sources in _outgoing(by_id[node_id], done[node_id], node_id == journey.entry):
            incoming[target] |= sources
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    return done


def _uses(node: Node) -> Iterator[tuple[str, EventUse]]:
    if isinstance(node, EngagementNode):
        for field, source in message_fields(node.message):
            yield f"message.{field}", template_event_use(source)
    elif isinstance(node, ProfileUpdateNode):
        for prop, source in node.set.items():
            yield f"set.{prop}", template_event_use(source)
    elif isinstance(node, SplitNode):
        for i, branch in enumerate(node.branches):
            yield f"branches[{i}].when", expression_event_use(branch.when)


def personalization_rules(journey: Journey, catalog: dict[str, EventSchema]) -> Iterator[Finding]:
    schemas = {**catalog, **journey.events}
    reaching = sources_by_node(journey)
    for node in journey.nodes:
        for field, use in _uses(node):
            if use.uses_event:
                yield from _check_use(node, field, use, reaching.get(node.id, frozenset()), schemas)


def _check_use(node: Node, field: str, use: EventUse, sources: frozenset[Source],
               schemas: dict[str, EventSchema]) -> Iterator[Finding]:
    if isinstance(node, EngagementNode) and node.channel in ONLINE_CHANNELS:
        yield (node.id, field, "event-in-online-channel",
               f"{node.channel} messages cannot use event personalization: use profile values")
        return
    for source in sorted(sources, key=lambda s: s.supplier):
        if source.event is None:
            yield (node.id, field, "event-unavailable",
                   f"reads 'event' but no event is available here: the journey entered at the "
                   f"profile date of '{source.supplier}' with no action node since")
            return
    if isinstance(node, EngagementNode):
        for source in sorted(sources, key=lambda s: s.supplier):
            if source.long_wait:
                wait_node, length = source.long_wait
                yield (node.id, field, "event-delay-too-long",
                       f"'{wait_node}' waits {length} between '{source.supplier}', which supplies "
                       f"event '{source.event}', and this message: each such delay must be "
                       "shorter than 24h")
                return
    for source in sorted(sources, key=lambda s: s.supplier):
        schema = schemas.get(source.event or "")
        if schema is None:
            continue
        for prop in sorted(use.properties - schema.properties.keys()):
            known = ", ".join(sorted(schema.properties)) or "none"
            yield (node.id, field, "unknown-event-property",
                   f"event.{prop} is not a property of '{source.event}' (from '{source.supplier}'; "
                   f"its properties: {known})")
