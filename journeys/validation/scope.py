"""Where event personalization is available: the product page's rules, checked statically.

Each path through the journey carries a *source*: the segment node that last supplied an
event (or supplied none, a profile-date entry), and the first long wait since. A template
that reads ``event`` is checked against every source that can reach its node.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

from journeys.language.channels import ONLINE_CHANNELS
from journeys.language.durations import format_duration
from journeys.language.models import (
    ActionNode,
    DateTimeNode,
    DelayNode,
    EngagementNode,
    EventSchema,
    InactionNode,
    Journey,
    Node,
    ProfileUpdateNode,
    SegmentNode,
    SplitNode,
)
from journeys.personalization.personalize import (
    EventUse,
    expression_event_use,
    message_fields,
    template_event_use,
)
from journeys.validation.rules import Finding

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


class _Waits:
    """Sources after a wait, without a walk over them where it cannot change one: a short wait
    changes none, and sources that already passed a long wait stay as they are. (Walking every
    source at every delay was quadratic in long chains after wide merges.)"""

    def __init__(self) -> None:
        self.settled: set[frozenset[Source]] = set()

    def after(self, sources: frozenset[Source], node_id: str,
              length: timedelta) -> frozenset[Source]:
        if length < MAX_PERSONALIZED_DELAY or sources in self.settled:
            return sources
        out = frozenset(s.after_wait(node_id, length) for s in sources)
        self.settled.add(out)  # every source with an event now carries a long wait
        return out


def _outgoing(node: Node, incoming: frozenset[Source], entry: bool,
              waits: _Waits) -> Iterator[tuple[str, frozenset[Source]]]:
    """(target, sources) for each edge leaving ``node``."""
    own = frozenset({Source(node.id, getattr(node, "event", None))})
    if isinstance(node, ActionNode):
        for field, target in node.targets():
            if field == "next":
                yield target, own
            else:
                yield target, waits.after(incoming, node.id, node.within or _FOREVER)
        return
    if isinstance(node, InactionNode):
        out = own if entry else waits.after(incoming, node.id, node.within)
    elif isinstance(node, DateTimeNode):
        if node.event:
            out = own
        elif entry:
            out = frozenset({Source(node.id, None)})
        else:
            out = waits.after(incoming, node.id, _FOREVER)
    elif isinstance(node, SegmentNode):  # an audience's entry carries no event (as a profile date)
        out = frozenset({Source(node.id, None)})
    elif isinstance(node, DelayNode):
        out = waits.after(incoming, node.id, node.duration)
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
    waits = _Waits()
    while ready:
        node_id = ready.pop()
        done[node_id] = frozenset(incoming[node_id])
        for target, sources in _outgoing(by_id[node_id], done[node_id], node_id == journey.entry,
                                         waits):
            incoming[target] |= sources
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    return done


def _uses(node: Node) -> Iterator[tuple[str, EventUse]]:
    if isinstance(node, EngagementNode):
        for path, message in node.versions():
            for field, source in message_fields(message):
                yield f"{path}.{field}", template_event_use(source)
    elif isinstance(node, ProfileUpdateNode):
        for prop, source in node.set.items():
            yield f"set.{prop}", template_event_use(source)
    elif isinstance(node, SplitNode):
        for i, branch in enumerate(node.branches):
            yield f"branches[{i}].when", expression_event_use(branch.when)


@dataclass(frozen=True)
class _Reach:
    """The sources into a node, summed up once for all its templates (and every node that
    the same sources reach): checking each use against every source was quadratic."""

    ordered: tuple[Source, ...]  # by supplier: the order problems are reported in
    no_event: Source | None  # the first that supplies no event
    long_wait: Source | None  # the first with a wait of 24h or more since its event
    events: frozenset[str]

    @classmethod
    def of(cls, sources: frozenset[Source]) -> _Reach:
        ordered = tuple(sorted(sources, key=lambda s: s.supplier))
        return cls(ordered, next((s for s in ordered if s.event is None), None),
                   next((s for s in ordered if s.long_wait), None),
                   frozenset(s.event for s in ordered if s.event))


def personalization_rules(journey: Journey, catalog: dict[str, EventSchema]) -> Iterator[Finding]:
    schemas = {**catalog, **journey.events}
    reaching = sources_by_node(journey)
    summaries: dict[frozenset[Source], _Reach] = {}
    for node in journey.nodes:
        for field, use in _uses(node):
            if use.uses_event:
                sources = reaching.get(node.id, frozenset())
                reach = summaries.get(sources)
                if reach is None:
                    reach = summaries[sources] = _Reach.of(sources)
                yield from _check_use(node, field, use, reach, schemas)


def _check_use(node: Node, field: str, use: EventUse, reach: _Reach,
               schemas: dict[str, EventSchema]) -> Iterator[Finding]:
    if isinstance(node, EngagementNode) and node.channel in ONLINE_CHANNELS:
        yield (node.id, field, "event-in-online-channel",
               f"{node.channel} messages cannot use event personalization: use profile values")
        return
    if reach.no_event is not None:
        yield (node.id, field, "event-unavailable",
               f"reads 'event' but no event is available here: the journey entered at the "
               f"profile date of '{reach.no_event.supplier}' with no action node since")
        return
    if isinstance(node, EngagementNode) and reach.long_wait and reach.long_wait.long_wait:
        source = reach.long_wait
        wait_node, length = reach.long_wait.long_wait
        yield (node.id, field, "event-delay-too-long",
               f"'{wait_node}' waits {length} between '{source.supplier}', which supplies "
               f"event '{source.event}', and this message: each such delay must be "
               "shorter than 24h")
        return
    # Per event, not per source: only an event whose schema lacks a property costs a walk.
    missing: dict[str, tuple[list[str], str]] = {}
    for event in reach.events:
        schema = schemas.get(event)
        if schema is not None and (props := sorted(use.properties - schema.properties.keys())):
            missing[event] = props, ", ".join(sorted(schema.properties)) or "none"
    if not missing:
        return
    for source in reach.ordered:
        props, known = missing.get(source.event or "", ([], ""))
        for prop in props:
            yield (node.id, field, "unknown-event-property",
                   f"event.{prop} is not a property of '{source.event}' (from '{source.supplier}'; "
                   f"its properties: {known})")
