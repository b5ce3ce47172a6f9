"""Who went through each node and along each edge of a journey, counted by the database.

A node's *entered* is the entries that reached it: those that ended (their ``ended`` record lists
every node they went through) plus those still running that are known to be there or past it:
waiting at it now (visibility), messaged by it (the outbox: one row per entry and node) or routed
by it (``path_choices``: one row per entry and IntelliNODE), there or at any node it dominates
(every way from the entry to that node passes through it). The entry node counts every entry of
the journey. An edge counts the ended entries that went along it, plus the running entries an
IntelliNODE sent down it. The control group is counted too: it walks the journey like the others.

So a node never counts more entries than the node every way to it passes (its immediate
dominator; for a node with one way in, the node before it). Running entries used to be counted
only where they were seen: 15 waiting after a split counted at the wait, not at the split
(``entered 1``, the ended one, then ``entered 15``). A running entry is counted once per node:
the waiting ones by their one node now, the others by their own records (grouped by entry);
where both say an entry passed a node, the larger of the two counts stands (never their sum).

Each query is a GROUP BY: ended entries are grouped by their walk (the list of nodes, as text),
and a journey has few distinct walks however many entries it has.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import pairwise

from sqlalchemy import String, and_, cast, exists, func, select, union_all

from journeys.language.models import IntelliNode, Journey
from journeys.store.database import Store
from journeys.store.intellinode import path_names, target
from journeys.store.tables import outbox, outcomes, path_choices

#: The ``reason`` of an ended entry that left by ``exit_when``.
EXIT_EVENT = "exit event"


@dataclass
class Walked:
    """Per node: entries that reached it and left by an exit event there; per edge: users."""

    entered: Counter[str] = field(default_factory=Counter)
    exits: Counter[str] = field(default_factory=Counter)
    edges: Counter[tuple[str, str]] = field(default_factory=Counter)
    ended: int = 0  # entries with an end recorded
    running_sent: Counter[str] = field(default_factory=Counter)  # outbox rows of running entries
    running_chosen: Counter[tuple[str, str]] = field(default_factory=Counter)  # (node, path)


def walked(store: Store, journey: Journey, entries: int,
           waiting: Mapping[str, int] | None = None) -> Walked:
    """The funnel's counts per node and edge (see the module's docstring for what they mean)."""
    o, b, c = outcomes.c, outbox.c, path_choices.c
    ended = and_(o.journey_id == journey.id, o.kind == "ended")
    # An outbox row's entry: its idempotency key is "<workflow id>:<run key>:<node id>".
    run_key = func.substr(b.idempotency_key, func.length(b.workflow_id) + 2,
                          func.length(b.idempotency_key) - func.length(b.workflow_id)
                          - func.length(b.node_id) - 2)
    running_sent = (select(run_key.label("run_key"), b.node_id.label("node_id"))
                    .where(b.journey_id == journey.id, ~exists().where(ended, o.run_key == run_key)))
    running_chosen = (select(c.run_key.label("run_key"), c.node_id.label("node_id"))
                      .where(c.journey_id == journey.id, ~exists().where(ended, o.run_key == c.run_key)))
    seen = union_all(running_sent, running_chosen).subquery()
    per_entry = (select(func.aggregate_strings(seen.c.node_id, ",").label("nodes"))
                 .group_by(seen.c.run_key).subquery())
    with store.engine.connect() as conn:
        walks = conn.execute(select(cast(o.nodes, String), func.count()).where(ended)
                             .group_by(cast(o.nodes, String))).all()
        # Each running entry's recorded nodes (sends, choices), as text; few distinct texts.
        recorded = conn.execute(select(per_entry.c.nodes, func.count())
                                .group_by(per_entry.c.nodes)).all()
        exits = conn.execute(select(o.node_id, func.count())
                             .where(ended, o.reason.like(f"{EXIT_EVENT}%"))
                             .group_by(o.node_id)).all()
        sent = conn.execute(select(b.node_id, func.count())
                            .where(b.journey_id == journey.id,
                                   ~exists().where(ended, o.run_key == run_key))
                            .group_by(b.node_id)).all()
        chosen = conn.execute(select(c.node_id, c.path, func.count())
                              .where(c.journey_id == journey.id,
                                     ~exists().where(ended, o.run_key == c.run_key))
                              .group_by(c.node_id, c.path)).all()
    found = Walked()
    for text, n in walks:
        nodes: list[str] = (json.loads(text) if text else None) or []
        found.ended += n
        for node_id in dict.fromkeys(nodes):  # a node counts once per entry
            found.entered[node_id] += n
        for pair in dict.fromkeys(pairwise(nodes)):
            found.edges[pair] += n
    found.exits.update({node_id: n for node_id, n in exits if node_id})
    found.running_sent.update(dict(sent))
    found.running_chosen.update({(node_id, path): n for node_id, path, n in chosen})
    intellinodes = {n.id: n for n in journey.nodes if isinstance(n, IntelliNode)}
    for (node_id, path), n in found.running_chosen.items():
        node = intellinodes.get(node_id)
        if node is not None and path in path_names(node):
            found.edges[(node_id, target(node, path))] += n
    found.entered.update(running(journey, waiting or {}, recorded))
    found.entered[journey.entry] = max(found.entered[journey.entry], entries)
    return found


def running(journey: Journey, waiting: Mapping[str, int],
            recorded: Iterable[tuple[str | None, int]]) -> Counter[str]:
    """Per node, the running entries known to have passed it: waiting at a node it dominates
    (visibility: each entry at one node), or with a record (``recorded``: each entry's recorded
    nodes as text, and how many entries have that text) at a node it dominates; the larger
    of the two, as one entry may be known both ways."""
    idom = dominators(journey)
    by_waiting: Counter[str] = Counter()
    for node_id, n in waiting.items():
        for passed in _chain(idom, node_id):
            by_waiting[passed] += n
    by_records: Counter[str] = Counter()
    for text, n in recorded:
        passed_set: set[str] = set()
        for node_id in dict.fromkeys((text or "").split(",")):
            if node_id not in passed_set:
                passed_set.update(_chain(idom, node_id, stop=passed_set))
        for passed in passed_set:
            by_records[passed] += n
    return Counter({node_id: max(by_waiting[node_id], by_records[node_id])
                    for node_id in by_waiting.keys() | by_records.keys()})


def _chain(idom: Mapping[str, str | None], node_id: str,
           stop: set[str] | None = None) -> Iterator[str]:
    """``node_id`` and its dominators up to the entry (or to one already in ``stop``)."""
    current: str | None = node_id if node_id in idom else None
    while current is not None and not (stop and current in stop):
        yield current
        current = idom[current]


def dominators(journey: Journey) -> dict[str, str | None]:
    """Each node reachable from the entry -> its immediate dominator (the entry -> None): the
    last node every way from the entry to it passes through. One pass in topological order
    (the graph is acyclic), intersecting the predecessors' dominator chains."""
    targets = {n.id: list(dict.fromkeys(t for _, t in n.targets())) for n in journey.nodes}
    if journey.entry not in targets:
        return {}
    reachable, todo = {journey.entry}, [journey.entry]
    while todo:
        for t in targets[todo.pop()]:
            if t in targets and t not in reachable:
                reachable.add(t)
                todo.append(t)
    preds: dict[str, list[str]] = {node_id: [] for node_id in reachable}
    for node_id in reachable:
        for t in targets[node_id]:
            if t in preds:
                preds[t].append(node_id)
    waiting = {node_id: len(p) for node_id, p in preds.items()}
    idom: dict[str, str | None] = {journey.entry: None}
    level = {journey.entry: 0}
    ready = [journey.entry]
    while ready:
        node_id = ready.pop()
        for t in targets[node_id]:
            if t not in waiting:
                continue
            waiting[t] -= 1
            if waiting[t]:
                continue
            common = preds[t][0]
            for other in preds[t][1:]:  # the nearest node both chains share
                a, b = common, other
                while a != b:
                    if level[a] >= level[b]:
                        a = idom[a]  # type: ignore[assignment]
                    else:
                        b = idom[b]  # type: ignore[assignment]
                common = a
            idom[t], level[t] = common, level[common] + 1
            ready.append(t)
    return idom


