"""A node's content variants side by side: per variant, the users it was sent to, delivered, who
opened and clicked it (where tracked) and who converted, the conversion rate of the delivered
with its 95 % interval (Wilson), and the chance that each variant is the best (the share of
draws from each rate's Beta posterior in which it is highest, with a fixed seed: the same store
prints the same)."""

from __future__ import annotations

import math
import random

from pydantic import BaseModel
from sqlalchemy import and_, distinct, func, select

from journeys.language.models import EngagementNode, Journey
from journeys.store import variants as live
from journeys.store.database import Store
from journeys.store.tables import engagements, outbox, outcomes

#: Outbox statuses that went to a provider, and those of them that arrived.
SENT = ("delivered", "kept", "failed", "unknown", "unreachable")
DELIVERED = ("delivered", "kept")
#: Draws for the chance of being best.
DRAWS = 20_000


class VariantStats(BaseModel):
    name: str
    weight: int
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    converted: int = 0
    rate: float | None = None  # converted / delivered
    low: float | None = None  # the rate's 95 % interval
    high: float | None = None
    best: float | None = None  # the chance it is the best, 0..1


class NodeVariants(BaseModel):
    node_id: str
    winner: str | None  # everyone gets it now (starter.py variants --winner)
    variants: list[VariantStats]


def variant_stats(store: Store, journey: Journey, node: EngagementNode) -> NodeVariants:
    """Counted by the database per variant: distinct users, not rows (a user gets the same one)."""
    o = outbox.c
    mine = and_(o.journey_id == journey.id, o.node_id == node.id, o.variant.is_not(None))
    with store.engine.connect() as conn:
        users = {(v, s): n for v, s, n in conn.execute(
            select(o.variant, o.status, func.count(distinct(o.user_id))).where(mine)
            .group_by(o.variant, o.status))}
        engaged = {(v, k): n for v, k, n in conn.execute(
            select(o.variant, engagements.c.kind, func.count(distinct(o.user_id)))
            .join(engagements, and_(engagements.c.journey_id == o.journey_id,
                                    engagements.c.node_id == o.node_id, engagements.c.user_id == o.user_id,
                                    engagements.c.machine.is_(False)))
            .where(mine, o.status.in_(DELIVERED)).group_by(o.variant, engagements.c.kind))}
        converted: dict[str, int] = {v: n for v, n in conn.execute(
            select(o.variant, func.count(distinct(o.user_id)))
            .join(outcomes, and_(outcomes.c.journey_id == o.journey_id, outcomes.c.user_id == o.user_id,
                                 outcomes.c.kind == "converted", outcomes.c.held_out.is_(False)))
            .where(mine, o.status.in_(DELIVERED)).group_by(o.variant))}
    rows = []
    for variant in node.variants:
        name = variant.name
        delivered = sum(users.get((name, s), 0) for s in DELIVERED)
        won = int(converted.get(name, 0))
        low, high = wilson(won, delivered)
        rows.append(VariantStats(
            name=name, weight=variant.weight, sent=sum(users.get((name, s), 0) for s in SENT),
            delivered=delivered, opened=engaged.get((name, "opened"), 0),
            clicked=engaged.get((name, "clicked"), 0), converted=won,
            rate=won / delivered if delivered else None, low=low, high=high))
    for row, chance in zip(rows, chances_best([(r.converted, r.delivered) for r in rows]), strict=True):
        row.best = chance
    return NodeVariants(node_id=node.id, winner=live.winner(store, journey.id, node.id), variants=rows)


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float | None, float | None]:
    """The 95 % Wilson score interval of a rate (sound at 0 or 1, and for small counts)."""
    if trials <= 0:
        return None, None
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - spread), min(1.0, centre + spread)


def chances_best(results: list[tuple[int, int]], draws: int = DRAWS) -> list[float | None]:
    """Per (converted, delivered): how often its draw from Beta(1 + converted, 1 + the rest) is
    the highest. None for all while any variant has been delivered to nobody."""
    if len(results) < 2 or any(n <= 0 for _, n in results):
        return [None] * len(results)
    rng = random.Random(0)
    wins = [0] * len(results)
    for _ in range(draws):
        drawn = [rng.betavariate(1 + c, 1 + n - c) for c, n in results]
        wins[drawn.index(max(drawn))] += 1
    return [w / draws for w in wins]


def format_variants(found: NodeVariants) -> list[str]:
    """The node's variants as lines of ``stats``."""
    winner = f"; winner {found.winner}: everyone gets it" if found.winner else ""
    lines = [f"  variants of {found.node_id}{winner}:"]
    for v in found.variants:
        rate = "-" if v.rate is None else (f"{v.rate:.1%} (95 % {v.low:.1%} to {v.high:.1%})")
        best = "-" if v.best is None else f"{v.best:.0%}"
        lines.append(f"    {v.name:<12} weight {v.weight:>5}: sent {v.sent:>6}, delivered {v.delivered:>6}, "
                     f"opened {v.opened:>5}, clicked {v.clicked:>5}, converted {v.converted:>5} {rate}, "
                     f"chance best {best}")
    return lines
