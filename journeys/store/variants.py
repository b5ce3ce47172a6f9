"""Live changes to an engagement node's content variants (``starter.py variants``): a winner sends
everyone that variant from then on; a reset goes back to the weights. Every change is kept, the
latest applies (as IntelliNODE's live changes)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, select

from journeys.language.models import EngagementNode, Journey
from journeys.language.problems import UsageError
from journeys.store.database import Store
from journeys.store.tables import variant_settings


def node_with_variants(journey: Journey, node_id: str) -> EngagementNode:
    try:
        node = journey.node(node_id)
    except KeyError:
        raise UsageError(f"{journey.id}: no node '{node_id}'") from None
    if not isinstance(node, EngagementNode) or not node.variants:
        raise UsageError(f"{journey.id}: node '{node_id}' has no content variants")
    return node


def winner(store: Store, journey_id: str, node_id: str) -> str | None:
    """The variant everyone gets now, if one was made the winner."""
    s = variant_settings.c
    query = (select(s.winner).where(s.journey_id == journey_id, s.node_id == node_id)
             .order_by(s.id.desc()).limit(1))
    with store.engine.connect() as conn:
        return conn.execute(query).scalar()


def history(store: Store, journey_id: str, node_id: str) -> list[tuple[str | None, datetime]]:
    """Every change, oldest first: (the winner, or None for the weights; when)."""
    s = variant_settings.c
    query = select(s.winner, s.at).where(s.journey_id == journey_id, s.node_id == node_id).order_by(s.id)
    with store.engine.connect() as conn:
        return [(w, at if at.tzinfo else at.replace(tzinfo=UTC)) for w, at in conn.execute(query)]


def set_winner(store: Store, journey: Journey, node_id: str, name: str | None,
               now: datetime | None = None) -> None:
    """Make ``name`` the winner of the node's variants (None: back to their weights)."""
    node = node_with_variants(journey, node_id)
    names = [v.name for v in node.variants]
    if name is not None and name not in names:
        raise UsageError(f"{journey.id}: node '{node_id}' has no variant '{name}'; its variants: "
                         f"{', '.join(names)}")
    with store.engine.begin() as conn:
        conn.execute(insert(variant_settings), {"journey_id": journey.id, "node_id": node_id,
                                                "winner": name, "at": now or datetime.now(UTC)})
