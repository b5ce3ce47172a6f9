"""What came of each entry into a journey: a conversion (a goal event, with the node the user was
at and the IntelliNODE paths they took), a time-out, and its end (the nodes it went through and
why it left: the funnel's counts per node and edge). Recorded once per entry and kind: a retried
activity or a replay finds the record and adds nothing."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from journeys.store.database import Store
from journeys.store.tables import outcomes

OutcomeKind = Literal["converted", "timed_out", "ended"]


class TakenPath(BaseModel):
    node: str  # the IntelliNODE
    path: str  # its path's name, or the node it leads to


class Outcome(BaseModel):
    journey_id: str
    run_key: str  # one entry
    kind: OutcomeKind
    user_id: str
    workflow_id: str
    goal: str | None = None
    node_id: str | None = None  # where the user was when it happened
    paths: list[TakenPath] = Field(default_factory=list)
    held_out: bool = False  # in the control group
    at: datetime | None = None
    reason: str | None = None  # "ended": why the user left; None if they walked to the end
    nodes: list[str] | None = None  # "ended": the nodes they went through, in order


def held_out(journey_id: str, user_id: str, percent: int) -> bool:
    """Is this user in the journey's control group? The same answer every time, on every
    machine: a hash of the journey and the user, not a random draw."""
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"{journey_id}/{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < percent


def record(store: Store, outcome: Outcome) -> bool:
    """Record ``outcome`` unless this entry has one of its kind already; True if it is new."""
    values = outcome.model_dump() | {"at": outcome.at or datetime.now(UTC)}
    try:
        with store.engine.begin() as conn:
            conn.execute(insert(outcomes), values)
    except IntegrityError:
        return False
    return True


def of_journey(store: Store, journey_id: str, *, kind: OutcomeKind | None = None,
               user_id: str | None = None) -> list[Outcome]:
    """The outcomes recorded for ``journey_id`` (of one kind, of one user), oldest first."""
    c = outcomes.c
    query = select(outcomes).where(c.journey_id == journey_id).order_by(c.at)
    if kind is not None:
        query = query.where(c.kind == kind)
    if user_id is not None:
        query = query.where(c.user_id == user_id)
    with store.engine.connect() as conn:
        return [Outcome.model_validate(dict(row._mapping)) for row in conn.execute(query)]
