"""The checks across a folder's journeys that ``trigger_journey`` nodes need: the target is a
valid journey of the folder, it enters on the event that reaches the node, and no chain of
triggers leads back to where it started."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from journeys.language.models import ActionNode, InactionNode, Journey, TriggerJourneyNode
from journeys.language.problems import Problem
from journeys.validation.scope import sources_by_node
from journeys.validation.validate import Result


def triggers_checked(results: Sequence[Result]) -> list[Result]:
    """``results`` with the problems of each ``trigger_journey`` node added to its file."""
    valid = {loaded.journey.id: loaded.journey for loaded, problems in results
             if loaded.journey is not None and not problems}
    checked = []
    for loaded, problems in results:
        journey = loaded.journey
        if journey is not None and not problems:
            problems = [Problem(file=loaded.path, node=node, field="journey", code=code, message=message)
                        for node, code, message in _problems(journey, valid)]
        checked.append((loaded, problems))
    return checked


def _entry_event(journey: Journey) -> str | None:
    entry = journey.entry_node
    if isinstance(entry, ActionNode):
        return entry.event
    return entry.event if isinstance(entry, InactionNode) else None


def _problems(journey: Journey, valid: dict[str, Journey]) -> Iterator[tuple[str, str, str]]:
    sources = sources_by_node(journey)
    for node in journey.nodes:
        if not isinstance(node, TriggerJourneyNode):
            continue
        target = valid.get(node.journey)
        if target is None:
            yield node.id, "unknown-journey", f"'{node.journey}' is no valid journey of this folder"
            continue
        wanted = _entry_event(target)
        events = sorted({s.event or "no event" for s in sources.get(node.id, ())})
        if wanted is None or events != [wanted]:
            enters = f"enters on '{wanted}'" if wanted else "enters on no event (a profile date)"
            yield (node.id, "trigger-event",
                   f"journey '{node.journey}' {enters}; here the event is {' or '.join(events)}")
        if _leads_back(journey.id, node.journey, valid):
            yield (node.id, "trigger-cycle",
                   f"journey '{node.journey}' triggers, in the end, '{journey.id}' again")


def _leads_back(origin: str, start: str, valid: dict[str, Journey]) -> bool:
    """Does a chain of triggers from ``start`` reach ``origin``?"""
    seen, todo = set(), [start]
    while todo:
        current = todo.pop()
        if current == origin:
            return True
        if current in seen or current not in valid:
            continue
        seen.add(current)
        todo += [n.journey for n in valid[current].nodes if isinstance(n, TriggerJourneyNode)]
    return False
