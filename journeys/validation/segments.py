"""The rules of a ``segment`` entry (an audience journey): it is the entry, its events are known
to the catalog, and it can be asked of the store (whole days; conditions that can hold)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from journeys.language.models import EventSchema, Journey, SegmentNode
from journeys.language.segments import Did, DidNot
from journeys.validation.rules import Finding

_DAY = timedelta(days=1)


def segment_rules(journey: Journey, catalog: dict[str, EventSchema]) -> Iterator[Finding]:
    known = {**catalog, **journey.events}
    for node in journey.nodes:
        if not isinstance(node, SegmentNode):
            continue
        if node.id != journey.entry:
            yield (node.id, "type", "segment-mid-journey",
                   "a segment node says who enters: it is the journey's entry, not a node mid-journey")
        windows: list[tuple[str, Did | DidNot]] = [
            *((f"did[{i}]", c) for i, c in enumerate(node.did)),
            *((f"did_not[{i}]", c) for i, c in enumerate(node.did_not))]
        for where, window in windows:
            if known and window.event not in known:  # (no schemas at all: nothing to check against)
                yield (node.id, f"{where}.event", "segment-event",
                       f"'{window.event}' has no schema in the journey's events or the "
                       "folder's catalog (event-catalog.yaml): declare it, or fix the name")
            if window.in_last < _DAY or window.in_last % _DAY:
                yield (node.id, f"{where}.in_last", "segment-window",
                       "in_last counts whole days (what users did is counted per day): "
                       "write 1d, 30d ...")
        bounds: dict[str, dict[str, float]] = {}
        for i, condition in enumerate(node.profile):
            operator, value = condition.rule()
            if operator in {"at_least", "at_most"}:
                known_bounds = bounds.setdefault(condition.property, {})
                known_bounds[operator] = value
                low, high = known_bounds.get("at_least"), known_bounds.get("at_most")
                if low is not None and high is not None and low > high:
                    yield (node.id, f"profile[{i}]", "segment-window",
                           f"'{condition.property}' at least {low:g} and at most {high:g}: nobody matches")
