"""Structural rules: the graph, the node fields that depend on each other, the templates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from jinja2.exceptions import TemplateSyntaxError

from journeys.language.channels import CHANNEL_FIELDS, OUTCOMES
from journeys.language.messages import Message
from journeys.language.models import (
    SEGMENT_TYPES,
    ActionNode,
    DateTimeNode,
    EngagementNode,
    EventSchema,
    InactionNode,
    IntelliNode,
    Journey,
    ProfileUpdateNode,
    QuietHours,
    SplitNode,
)
from journeys.language.zones import zone
from journeys.personalization.personalize import (
    LINK_VARIABLES,
    MESSAGE_FUNCTIONS,
    check_expressions,
    check_template,
    message_fields,
    unknown_variables,
    unsafe_attributes,
)
from journeys.validation.messages import variant_rules

#: (node id or None, field or None, code, message)
Finding = tuple[str | None, str | None, str, str]


def _article(word: str) -> str:
    return "an" if word[:1] in set("aeiou") else "a"


def graph_rules(journey: Journey) -> Iterator[Finding]:
    ids = [node.id for node in journey.nodes]
    seen: set[str] = set()
    for node_id in ids:
        if node_id in seen:
            yield node_id, "id", "duplicate-id", f"the id '{node_id}' is used by more than one node"
        seen.add(node_id)
    if journey.entry not in seen:
        yield (None, "entry", "unknown-entry",
               f"entry '{journey.entry}' is not a node of this journey")
    elif journey.entry_node.type not in SEGMENT_TYPES:
        yield (journey.entry, "type", "entry-not-segment",
               f"the entry node is {_article(journey.entry_node.type)} {journey.entry_node.type} "
               "node: a journey starts at an "
               "action, inaction, date_time or segment node")
    for node in journey.nodes:
        for field, target in node.targets():
            if target not in seen:
                yield node.id, field, "unknown-target", f"'{target}' is not a node of this journey"
    if len(journey.goals) > 3:
        yield (None, "goals", "too-many-goals",
               f"{len(journey.goals)} goals: a journey has at most 3")
    if journey.goal_within is not None and not journey.goals:
        yield (None, "goal_within", "goal-within-without-goals",
               "goal_within needs 'goals': the events that count as a conversion")
    yield from _cycles(journey, seen)


def _cycles(journey: Journey, ids: set[str]) -> Iterator[Finding]:
    edges = {n.id: [t for _, t in n.targets() if t in ids] for n in journey.nodes}
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    reported: set[str] = set()
    for start in edges:
        if state.get(start):
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(edges[start]))]
        state[start] = 1
        while stack:
            node_id, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node_id] = 2
                stack.pop()
            elif state.get(child) == 1 and child not in reported:
                reported.add(child)
                yield node_id, None, "cycle", f"leads back to '{child}': the nodes form a loop"
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(edges[child])))
    if journey.entry in ids:
        reachable = {journey.entry}
        todo = [journey.entry]
        while todo:
            for child in edges[todo.pop()]:
                if child not in reachable:
                    reachable.add(child)
                    todo.append(child)
        for node in journey.nodes:
            if node.id not in reachable:
                yield (node.id, None, "unreachable",
                       f"no path from the entry '{journey.entry}' leads here")


def entry_key_rules(journey: Journey, catalog: dict[str, EventSchema]) -> Iterator[Finding]:
    """A keyed journey's ``entry_key`` must be a property of its entry event's schema (the
    journey's ``events``, else the folder's catalog). An entry event without a schema is
    refused too: the key decides which instance every event reaches, so a misspelt one would
    start no instance at all."""
    if journey.entry_key is None or journey.entry not in {node.id for node in journey.nodes}:
        return
    key, event = journey.entry_key, getattr(journey.entry_node, "event", None)
    if not event:
        yield (None, "entry_key", "unknown-entry-key",
               f"entry_key '{key}' needs an entry event to read it from: the entry "
               f"'{journey.entry}' has none (a profile date)")
        return
    schema = {**catalog, **journey.events}.get(event)
    if schema is None:
        yield (None, "entry_key", "unknown-entry-key",
               f"entry_key '{key}': '{event}' has no schema to check it against: declare its "
               "properties in the journey's 'events' or the folder's event catalog")
    elif key not in schema.properties:
        yield (None, "entry_key", "unknown-entry-key",
               f"entry_key '{key}' is not a property of '{event}' (its properties: "
               f"{', '.join(sorted(schema.properties)) or 'none'})")


def timezone_exists(name: str) -> bool:
    """Is ``name`` a timezone of the IANA database (Europe/Paris, UTC)?"""
    return zone(name) is not None


def policy_rules(journey: Journey) -> Iterator[Finding]:
    """Quiet hours, their timezone, and the outcome paths of engagement nodes."""
    if journey.timezone is not None and not timezone_exists(journey.timezone):
        yield (None, "timezone", "unknown-timezone",
               f"'{journey.timezone}' is not an IANA timezone (e.g. 'Europe/Paris', 'UTC')")
    if journey.quiet_hours:
        yield from _quiet_hours(None, "quiet_hours", journey.quiet_hours)
    for node in journey.nodes:
        if not isinstance(node, EngagementNode):
            continue
        if node.quiet_hours and node.ignore_quiet_hours:
            yield (node.id, "ignore_quiet_hours", "quiet-hours",
                   "the node has its own quiet_hours and ignores them: give one or the other")
        elif node.quiet_hours:
            yield from _quiet_hours(node.id, "quiet_hours", node.quiet_hours)
        for outcome in node.on:
            if outcome not in OUTCOMES:
                yield (node.id, f"on.{outcome}", "unknown-outcome",
                       f"'{outcome}' is not an outcome of a send (outcomes: {', '.join(OUTCOMES)})")


def _quiet_hours(node_id: str | None, field: str, quiet: QuietHours) -> Iterator[Finding]:
    if quiet.start == quiet.end:
        yield (node_id, f"{field}.end", "quiet-hours",
               f"the window {quiet.start}-{quiet.end} is empty: 'end' must differ from 'start' "
               "(a window past midnight ends before it starts: 22:00-08:00)")


def node_rules(journey: Journey) -> Iterator[Finding]:
    entry = journey.entry
    for node in journey.nodes:
        if isinstance(node, InactionNode) and node.id == entry and not node.event:
            yield node.id, "event", "missing-field", "an entry inaction node needs its main 'event'"
        elif isinstance(node, ActionNode) and node.id == entry and (node.within or node.timeout_next):
            yield (node.id, "within" if node.within else "timeout_next", "bad-value",
                   "an entry action node has no wait: 'within' and 'timeout_next' belong mid-journey")
        elif isinstance(node, ActionNode) and node.timeout_next and node.within is None:
            yield (node.id, "timeout_next", "bad-value",
                   "'timeout_next' needs 'within': how long to wait")
        elif isinstance(node, DateTimeNode):
            yield from _date_time(node)
        elif isinstance(node, IntelliNode):
            yield from _intellinode(journey, node)
        elif isinstance(node, EngagementNode):
            yield from _message(node, links=journey_links(journey, node))
            yield from _on_engagement(journey, node)
        elif isinstance(node, ProfileUpdateNode):
            for prop, source in node.set.items():
                yield from _template(node.id, f"set.{prop}", source)
        elif isinstance(node, SplitNode):
            wrong = check_expressions([branch.when for branch in node.branches])
            for i, branch in enumerate(node.branches):
                if i in wrong:
                    yield (node.id, f"branches[{i}].when", "expression-syntax",
                           f"'{branch.when}' is not an expression: {wrong[i].message}")
                else:
                    yield from _variables(node.id, f"branches[{i}].when", branch.when, expression=True)
    yield from policy_rules(journey)


def _date_time(node: DateTimeNode) -> Iterator[Finding]:
    if bool(node.event) == bool(node.profile_property):
        yield (node.id, "event", "date-source",
               "give either 'event' with 'date_property', or 'profile_property', "
               "not both or neither")
    elif node.event and not node.date_property:
        yield node.id, "date_property", "missing-field", "'date_property' names the event's date"
    elif node.profile_property and node.date_property:
        yield (node.id, "date_property", "date-source",
               "'date_property' belongs to an event: with 'profile_property' leave it out")


def _intellinode(journey: Journey, node: IntelliNode) -> Iterator[Finding]:
    if not 2 <= len(node.paths) <= 7:
        count = f"{len(node.paths)} path{'' if len(node.paths) == 1 else 's'}"
        yield node.id, "paths", "intellinode-paths", f"{count}: give 2 to 7"
    if node.mode == "manual":
        missing = [i for i, p in enumerate(node.paths) if p.percent is None]
        for i in missing:
            yield (node.id, f"paths[{i}].percent", "missing-field",
                   "manual mode needs each path's percent")
        total = sum(p.percent or 0 for p in node.paths)
        if not missing and total != 100:
            yield node.id, "paths", "percent-sum", f"the percentages sum to {total}, not 100"
    elif not journey.goals:
        yield (node.id, "mode", "intellinode-goals",
               "automated mode picks paths by the journey's goals: add 'goals'")
    elif node.min_share * len(node.paths) > 100:
        yield (node.id, "min_share", "bad-value",
               f"{len(node.paths)} paths cannot each keep {node.min_share} %")
    names = Counter(node.path_name(i) for i in range(len(node.paths)))  # (count() was quadratic)
    for name in sorted(n for n, times in names.items() if times > 1):
        yield (node.id, "paths", "bad-value",
               f"two paths are known as '{name}': give each a different 'name'")


def journey_links(journey: Journey, node: EngagementNode) -> frozenset[str]:
    """The link variables ``node``'s templates may read: a marketing email's unsubscribe link."""
    marketing_email = node.channel == "email" and not journey.transactional
    return LINK_VARIABLES if marketing_email else frozenset()


#: The channels whose opens and clicks come back: email's links and image, the app's reports.
ENGAGED_CHANNELS = frozenset({"email", "push", "web_push", "in_app", "web_popup", "app_inbox"})


def _on_engagement(journey: Journey, node: EngagementNode) -> Iterator[Finding]:
    engage = node.on_engagement
    if engage is None:
        return
    if node.channel not in ENGAGED_CHANNELS:
        yield (node.id, "on_engagement", "bad-value",
               f"{_article(node.channel)} {node.channel} message reports no opens or clicks to branch "
               f"on (channels that do: {', '.join(sorted(ENGAGED_CHANNELS))})")
    if engage.clicked is None and engage.opened is None:
        yield node.id, "on_engagement", "bad-value", "on_engagement needs 'clicked' or 'opened'"
    if "delivered" in node.on:
        yield (node.id, "on.delivered", "bad-value",
               "a delivered message takes on_engagement's paths: 'on.delivered' would never be taken")
    track = journey.track_of(node)
    for kind, tracked in (("clicked", track.clicks), ("opened", track.opens)):
        if node.channel == "email" and getattr(engage, kind) and not tracked:
            yield (node.id, f"on_engagement.{kind}", "bad-value",
                   f"the email's {'clicks' if kind == 'clicked' else 'opens'} are not tracked "
                   "(track), so this path is never taken")
    if engage.within.total_seconds() <= 0:
        yield node.id, "on_engagement.within", "bad-value", "'within' must be longer than 0"


def _message(node: EngagementNode, links: frozenset[str]) -> Iterator[Finding]:
    yield from variant_rules(node)
    for path, message in node.versions():
        yield from _fields(node, path, message)
        for field, source in message_fields(message):
            yield from _template(node.id, f"{path}.{field}", source, links | MESSAGE_FUNCTIONS)


def _fields(node: EngagementNode, path: str, message: Message) -> Iterator[Finding]:
    required, optional = CHANNEL_FIELDS[node.channel]
    for name in sorted(required - message.keys()):
        yield (node.id, f"{path}.{name}", "missing-message-field",
               f"{_article(node.channel)} {node.channel} message needs '{name}'")
    for name in sorted(message.keys() - required - optional):
        yield (node.id, f"{path}.{name}", "unknown-message-field",
               f"{_article(node.channel)} {node.channel} message has no '{name}' "
               f"(fields: {', '.join(sorted(required | optional))})")
    if node.channel == "email" and not {"html", "text"} & message.keys():
        yield node.id, f"{path}.html", "missing-message-field", "an email needs 'html' or 'text'"


def _template(node_id: str, field: str, source: str,
              links: frozenset[str] = frozenset()) -> Iterator[Finding]:
    try:
        check_template(source)
    except TemplateSyntaxError as exc:
        yield node_id, field, "template-syntax", f"line {exc.lineno}: {exc.message}"
    else:
        yield from _variables(node_id, field, source, links=links)


def _variables(node_id: str, field: str, source: str, *, expression: bool = False,
               links: frozenset[str] = frozenset()) -> Iterator[Finding]:
    unsafe = unsafe_attributes(source, expression=expression)
    if unsafe:
        yield (node_id, field, "unsafe-attribute",
               f"{', '.join(repr(a) for a in unsafe)}: the sandbox refuses attributes starting "
               "with '_' and Python's internals (a property so named: event['_name'])")
    for name in unknown_variables(source, expression=expression, allowed=links):
        why = (" (a marketing email's templates read 'unsubscribe_url' too)"
               if name in LINK_VARIABLES else "")
        yield (node_id, field, "unknown-variable",
               f"'{name}' is not a variable here: templates read 'profile' and 'event'{why}")
