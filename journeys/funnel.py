"""Who went through each node and along each edge of a journey, counted by the database.

A node's *entered* is the entries that reached it: those that ended (their ``ended`` record lists
every node they went through) plus those still running that are known to be there or past it:
waiting at it now (visibility), messaged by it (the outbox: one row per entry and node) or routed
by it (``path_choices``: one row per entry and IntelliNODE). The entry node counts every entry of
the journey. An edge counts the ended entries that went along it, plus the running entries an
IntelliNODE sent down it. The control group is counted too: it walks the journey like the others.

Each query is a GROUP BY: ended entries are grouped by their walk (the list of nodes, as text),
and a journey has few distinct walks however many entries it has.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise

from sqlalchemy import String, and_, cast, exists, func, select

from journeys.intellinode import path_names, target
from journeys.models import IntelliNode, Journey
from journeys.store import Store, outbox, outcomes, path_choices

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
    with store.engine.connect() as conn:
        walks = conn.execute(select(cast(o.nodes, String), func.count()).where(ended)
                             .group_by(cast(o.nodes, String))).all()
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
    found.entered.update(found.running_sent)
    for (node_id, path), n in found.running_chosen.items():
        found.entered[node_id] += n
        node = _intellinode(journey, node_id)
        if node is not None and path in path_names(node):
            found.edges[(node_id, target(node, path))] += n
    found.entered.update(dict(waiting or {}))
    found.entered[journey.entry] = max(found.entered[journey.entry], entries)
    return found


def _intellinode(journey: Journey, node_id: str) -> IntelliNode | None:
    node = next((n for n in journey.nodes if n.id == node_id), None)
    return node if isinstance(node, IntelliNode) else None
