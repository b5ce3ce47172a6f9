"""The catalog indexed by what routes: an event's name, a profile property's name.

An event that no journey starts on, waits for or exits on (most page views) is answered from a
dictionary, without a look at each journey and without reaching Temporal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from journeys.events import listens_to
from journeys.language.models import ActionNode, DateTimeNode, InactionNode, Journey


@dataclass(frozen=True)
class Index:
    """The journeys of a catalog, and for each event name and profile property the ones it concerns.

    ``by_event`` keeps the catalog's order, so an event reaches its journeys in file order.
    """

    journeys: tuple[Journey, ...]
    by_event: dict[str, tuple[Journey, ...]] = field(default_factory=dict)
    by_property: dict[str, tuple[Journey, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, journeys: Sequence[Journey],
           earlier: Mapping[str, frozenset[str]] | None = None) -> Index:
        """``earlier``: per journey id, events only an earlier version of it listened to."""
        by_event: dict[str, list[Journey]] = defaultdict(list)
        by_property: dict[str, list[Journey]] = defaultdict(list)
        for journey in journeys:
            names = _entry_events(journey) | listens_to(journey) | (earlier or {}).get(journey.id, set())
            for name in sorted(names):
                by_event[name].append(journey)
            dates = {node.profile_property for node in journey.nodes
                     if isinstance(node, DateTimeNode) and node.profile_property}
            for name in sorted(dates):  # an entry on it, or a wait on it whose date may move
                by_property[name].append(journey)
        return cls(tuple(journeys), {k: tuple(v) for k, v in by_event.items()},
                   {k: tuple(v) for k, v in by_property.items()})

    def for_event(self, name: str) -> tuple[Journey, ...]:
        """The journeys an event of this name may start, wake or end (a ``where`` may still say no)."""
        return self.by_event.get(name, ())

    def for_profile(self, changed: Iterable[str]) -> tuple[Journey, ...]:
        """The journeys with a date on these profile properties (they may start, or a wait may
        move), in catalog order."""
        hit = {id(j) for name in changed for j in self.by_property.get(name, ())}
        return tuple(j for j in self.journeys if id(j) in hit)


def _entry_events(journey: Journey) -> set[str]:
    entry = journey.entry_node
    if isinstance(entry, ActionNode | InactionNode | DateTimeNode) and entry.event:
        return {entry.event}
    return set()
