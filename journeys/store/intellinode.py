"""IntelliNODE: which path each user takes, and how the shares learn from conversions.

Manual mode shares users by the file's percentages; automated mode by Thompson sampling on
each path's Beta posterior (entered, converted), every path keeping ``min_share``. A live
change (``starter.py intellinode``: new percentages, or a winner) applies to users who reach
the node from then on. Every choice is recorded once per entry and node; a retried activity
gets the path recorded the first time.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import and_, func, insert, select
from sqlalchemy.exc import IntegrityError

from journeys.language.models import IntelliNode, Journey
from journeys.language.problems import UsageError
from journeys.numbers import whole_number
from journeys.store.database import Store, aware
from journeys.store.tables import outcomes, path_choices, path_settings

#: Thompson sampling's draws per recomputation: enough for shares to 1-2 points.
DRAWS = 4000


class PathResult(BaseModel):
    """One path's results so far, outside the control group."""

    path: str
    entered: int = 0
    converted: int = 0  # conversions after the user took this path

    @property
    def rate(self) -> float:
        return self.converted / self.entered if self.entered else 0.0


class PathSetting(BaseModel):
    """A live change to an IntelliNODE, from ``starter.py intellinode``."""

    percent: dict[str, int] | None = None
    winner: str | None = None
    at: datetime

    def describe(self) -> str:
        if self.winner:
            return f"winner {self.winner}"
        if self.percent:
            return ", ".join(f"{p}={v}%" for p, v in self.percent.items())
        return "back to the journey file"


def path_names(node: IntelliNode) -> list[str]:
    return [node.path_name(i) for i in range(len(node.paths))]


def results(store: Store, journey_id: str, node_id: str) -> list[PathResult]:
    """Entered and converted per path, counted by the database (control group left out)."""
    c, o = path_choices.c, outcomes.c
    converted = and_(o.journey_id == c.journey_id, o.run_key == c.run_key,
                     o.kind == "converted", o.at >= c.at)
    query = (select(c.path, func.count(), func.count(o.run_key))
             .select_from(path_choices.outerjoin(outcomes, converted))
             .where(c.journey_id == journey_id, c.node_id == node_id, c.held_out.is_(False))
             .group_by(c.path))
    with store.engine.connect() as conn:
        return [PathResult(path=p, entered=n, converted=k) for p, n, k in conn.execute(query)]


def settings_history(store: Store, journey_id: str, node_id: str) -> list[PathSetting]:
    """Every live change to the node, oldest first."""
    s = path_settings.c
    query = (select(s.percent, s.winner, s.at)
             .where(s.journey_id == journey_id, s.node_id == node_id).order_by(s.id))
    with store.engine.connect() as conn:
        return [PathSetting(percent=p, winner=w, at=aware(at)) for p, w, at in conn.execute(query)]


def change(store: Store, journey: Journey, node_id: str, *, percent: dict[str, int] | None = None,
           winner: str | None = None, now: datetime | None = None) -> PathSetting:
    """Record a live change (neither percent nor winner: back to the file's setting)."""
    node = intellinode(journey, node_id)
    names = path_names(node)
    if percent is not None and winner is not None:
        raise UsageError("give either --percent or --winner, not both")
    if winner is not None and winner not in names:
        raise UsageError(f"{journey.id}: node '{node_id}' has no path '{winner}'; "
                         f"its paths: {', '.join(names)}")
    if percent is not None:
        unknown = sorted(set(percent) - set(names))
        if unknown:
            raise UsageError(f"{journey.id}: node '{node_id}' has no path {', '.join(unknown)}; "
                             f"its paths: {', '.join(names)}")
        if sum(percent.values()) != 100 or any(v < 0 for v in percent.values()):
            raise UsageError(f"--percent: the percentages sum to {sum(percent.values())}, not 100")
        percent = {name: percent.get(name, 0) for name in names}
    setting = PathSetting(percent=percent, winner=winner, at=now or datetime.now(UTC))
    with store.engine.begin() as conn:
        conn.execute(insert(path_settings), {
            "journey_id": journey.id, "node_id": node_id, "percent": setting.percent,
            "winner": winner, "at": setting.at})
    return setting


def intellinode(journey: Journey, node_id: str) -> IntelliNode:
    node = next((n for n in journey.nodes if n.id == node_id), None)
    if not isinstance(node, IntelliNode):
        known = ", ".join(n.id for n in journey.nodes if isinstance(n, IntelliNode)) or "none"
        raise UsageError(f"{journey.id}: no IntelliNODE '{node_id}' (its IntelliNODEs: {known})")
    return node


def thompson(found: list[PathResult], min_share: int, rng: random.Random,
             draws: int = DRAWS) -> list[float]:
    """Each path's share: the chance it is the best under Beta(1 + converted, 1 + not), with
    every path lifted to ``min_share`` percent (the rest shared by those chances)."""
    wins = [0] * len(found)
    for _ in range(draws):
        samples = [rng.betavariate(1 + r.converted, 1 + r.entered - r.converted) for r in found]
        wins[samples.index(max(samples))] += 1
    floor = min_share / 100
    return [floor + (1 - floor * len(found)) * w / draws for w in wins]


def shares(store: Store, journey: Journey, node: IntelliNode,
           rng: random.Random | None = None) -> tuple[dict[str, float], str]:
    """The node's current allocation, and where it comes from (for stats and the report)."""
    fixed = fixed_shares(store, journey.id, node)
    return fixed if fixed else (learned_shares(store, journey.id, node, rng), "learning")


def fixed_shares(store: Store, journey_id: str, node: IntelliNode) -> tuple[dict[str, float], str] | None:
    """The shares set by hand (a live change, or manual mode's percentages); None: learning."""
    names = path_names(node)
    s = path_settings.c
    query = (select(s.percent, s.winner, s.at).where(s.journey_id == journey_id, s.node_id == node.id)
             .order_by(s.id.desc()).limit(1))
    with store.engine.connect() as conn:
        latest = conn.execute(query).first()
    # A change that names no path of the node as it is now (the file renamed or dropped it
    # since) is ignored: the node goes by its file again rather than choosing nothing.
    if latest and latest.winner in names:
        since = f"winner since {aware(latest.at):%Y-%m-%d %H:%M}"
        return {n: float(n == latest.winner) for n in names}, since
    if latest and latest.percent and sum(latest.percent.get(n, 0) for n in names) > 0:
        total = sum(latest.percent.get(n, 0) for n in names)
        return ({n: latest.percent.get(n, 0) / total for n in names},
                f"set since {aware(latest.at):%Y-%m-%d %H:%M}")
    if node.mode == "manual":
        return {n: (p.percent or 0) / 100 for n, p in zip(names, node.paths, strict=True)}, "manual"
    return None


def learned_shares(store: Store, journey_id: str, node: IntelliNode,
                   rng: random.Random | None = None) -> dict[str, float]:
    """Automated mode: Thompson sampling on the paths' results so far."""
    names = path_names(node)
    known = {r.path: r for r in results(store, journey_id, node.id)}
    found = [known.get(n, PathResult(path=n)) for n in names]
    return dict(zip(names, thompson(found, node.min_share, rng or random.Random()), strict=True))


class Allocations:
    """Automated shares, recomputed at most every ``refresh`` seconds per node (not per user).
    A change by hand is read at every choice: it applies to the next user at once."""

    def __init__(self, refresh: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.refresh, self._clock, self._rng = refresh, clock, rng
        self._cached: dict[tuple[str, str], tuple[float, dict[str, float]]] = {}
        self._lock = threading.Lock()

    def get(self, store: Store, journey_id: str, node: IntelliNode) -> dict[str, float]:
        fixed = fixed_shares(store, journey_id, node)
        if fixed:
            return fixed[0]
        key, now = (journey_id, node.id), self._clock()
        with self._lock:
            hit = self._cached.get(key)
        if hit and now - hit[0] < self.refresh:
            return hit[1]
        found = learned_shares(store, journey_id, node, self._rng)
        with self._lock:
            self._cached[key] = (now, found)
        return found


def choose(store: Store, journey_id: str, node: IntelliNode, *, run_key: str, user_id: str,
           held_out: bool, allocations: Allocations, rng: random.Random | None = None,
           now: datetime | None = None) -> str:
    """The path this entry takes at ``node``, recorded; the recorded one if chosen before."""
    c = path_choices.c
    where = (c.journey_id == journey_id, c.run_key == run_key, c.node_id == node.id)
    with store.engine.connect() as conn:
        taken = conn.execute(select(c.path).where(*where)).scalar()
    if taken is not None:
        return str(taken)
    allocation = allocations.get(store, journey_id, node)
    names = list(allocation)
    weights = [allocation[n] for n in names]
    if sum(weights) <= 0:  # (a file whose percentages are all 0): share equally, never fail
        weights = [1.0] * len(names)
    path = (rng or random).choices(names, weights=weights)[0]
    try:
        with store.engine.begin() as conn:
            conn.execute(insert(path_choices), {
                "journey_id": journey_id, "run_key": run_key, "node_id": node.id, "path": path,
                "user_id": user_id, "held_out": held_out, "at": now or datetime.now(UTC)})
    except IntegrityError:  # a concurrent attempt of the same activity won: take its path
        with store.engine.connect() as conn:
            return str(conn.execute(select(c.path).where(*where)).scalar_one())
    return path


def target(node: IntelliNode, path: str) -> str:
    """The node a path leads to."""
    return node.paths[path_names(node).index(path)].next


def choices_over_time(store: Store, journey_id: str, node_id: str,
                      bucket: timedelta) -> list[tuple[datetime, dict[str, int]]]:
    """Users per path in each ``bucket`` of time, oldest first (the report's shares over time)."""
    c = path_choices.c
    query = select(c.path, c.at).where(c.journey_id == journey_id, c.node_id == node_id)
    series: dict[datetime, dict[str, int]] = {}
    step = bucket.total_seconds()
    with store.engine.connect() as conn:
        for path, at in conn.execute(query):
            moment = aware(at)
            start = datetime.fromtimestamp(moment.timestamp() // step * step, UTC)
            counts = series.setdefault(start, {})
            counts[path] = counts.get(path, 0) + 1
    return sorted(series.items())


def parse_percent(text: str) -> dict[str, int]:
    """``a=70,b=30`` -> {"a": 70, "b": 30}; a UsageError naming what is wrong: a path given
    twice (the last would silently win) or a percent not in ASCII digits."""
    found: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.rpartition("=")
        number = whole_number(value)
        if not sep or not name.strip() or number is None:
            raise UsageError(f"--percent: '{part}' is not PATH=PERCENT (for example a=70,b=30)")
        if name.strip() in found:
            raise UsageError(f"--percent: the path '{name.strip()}' is given twice: "
                             "give each path once")
        found[name.strip()] = number
    if not found:
        raise UsageError("--percent: give PATH=PERCENT pairs, for example a=70,b=30")
    return found


def apply(store: Store, journey: Journey, node_id: str, *, percent: str | None = None,
          winner: str | None = None, reset: bool = False) -> str:
    """``starter.py intellinode``: record the change (if any) and say what applies now."""
    node = intellinode(journey, node_id)
    if percent is not None or winner is not None or reset:
        change(store, journey, node_id, winner=winner,
               percent=parse_percent(percent) if percent is not None else None)
    allocation, source = shares(store, journey, node)
    known = {r.path: r for r in results(store, journey.id, node_id)}
    lines = [f"{journey.id} / {node_id} ({node.mode}; now: {source})",
             f"{'path':<16} {'share':>6} {'entered':>8} {'converted':>10} {'rate':>7}"]
    for name, share in allocation.items():
        r = known.get(name, PathResult(path=name))
        lines.append(f"{name:<16} {share:>6.0%} {r.entered:>8} {r.converted:>10} {r.rate:>7.1%}")
    for past in settings_history(store, journey.id, node_id):
        lines.append(f"changed {past.at:%Y-%m-%d %H:%M:%S} UTC: {past.describe()}")
    return "\n".join(lines)
