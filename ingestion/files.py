"""``starter.py ingest``: a file of events, one JSON object a line, routed concurrently.

Each user's lines keep the file's order (a line waits for the user's previous one); a line
without an id gets one from its content, so the same file ingested twice enters nobody twice
(unlike an HTTP call without ``messageId``, which is a new event each time, as Segment's
libraries make it). A line that failed to route (Temporal or the store unreachable, the
deadline) is named in ``failed``: ingesting the file again routes it, and only it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from ingestion.pipeline import Ingestion
from journeys.ingest import BadLine, Line, SkippedLine, parse_line
from journeys.language.limits import brief


def _named(line: Line) -> str:
    """A line as a failure names it: its number, user and event."""
    return f"line {line.number} (user {line.event.user_id!r}, {line.event.name!r})"


def _forget(last: dict[str, asyncio.Task[None]], user: str, done: asyncio.Task[None]) -> None:
    """A user's latest line is done: nothing of theirs is left to wait for."""
    if last.get(user) is done:
        del last[user]


async def _numbered(lines: Iterable[str] | AsyncIterable[tuple[int, bytes | BadLine]]
                   ) -> AsyncIterator[tuple[int, str | bytes | BadLine]]:
    if isinstance(lines, AsyncIterable):
        async for numbered in lines:
            yield numbered
    else:
        for number, text in enumerate(lines, start=1):
            yield number, text


@dataclass
class Ingested:
    """What ``ingest`` did: lines read, and what became of them."""

    read: int = 0
    started: int = 0
    signalled: int = 0
    ignored: int = 0  # reached no journey, or every journey had it already
    skipped: int = 0  # page views, screens, aliases, groups, anonymous-only calls
    refused: list[str] = field(default_factory=list)  # "line N: why"
    failed: list[str] = field(default_factory=list)  # "line N (user, event): journey: why"


async def ingest(ingestion: Ingestion,
                 lines: Iterable[str] | AsyncIterable[tuple[int, bytes | BadLine]],
                 concurrency: int = 64, progress: Callable[[int], None] | None = None) -> Ingested:
    """Route a file of events, ``concurrency`` at a time, each user's in the file's order.
    ``lines``: texts, or numbered lines as :func:`ingestion.lines.read_lines` reads a file."""
    summary, gate = Ingested(), asyncio.Semaphore(concurrency)
    last: dict[str, asyncio.Task[None]] = {}  # each user's latest line: the next one waits for it

    async def one(line: Line, before: asyncio.Task[None] | None) -> None:
        try:
            if before is not None:
                await before
            routed = await ingestion.track(line.event, line.profile)
            actions = {r.action for r in routed}
            summary.started += "started" in actions
            summary.signalled += "signalled" in actions and "started" not in actions
            summary.ignored += not actions & {"started", "signalled", "failed"}
            summary.failed += [f"{_named(line)}: {r.journey_id}: {r.error}"
                               for r in routed if r.action == "failed"]
        except Exception as exc:  # a profile over its limit, an unreachable store, the deadline
            summary.failed.append(f"{_named(line)}: {brief(str(exc) or type(exc).__name__)}")
        finally:
            gate.release()
            if progress:
                progress(1)

    async for number, text in _numbered(lines):
        try:
            if isinstance(text, BadLine):  # unreadable: over the length limit
                raise text
            line = parse_line(text, number)
        except (BadLine, SkippedLine) as exc:
            summary.read += 1
            if isinstance(exc, SkippedLine):
                summary.skipped += 1
            else:
                summary.refused.append(str(exc))
            if progress:
                progress(1)
            continue
        if line is None:
            continue
        summary.read += 1
        await gate.acquire()
        user = line.event.user_id
        task = asyncio.create_task(one(line, last.get(user)))
        last[user] = task
        task.add_done_callback(functools.partial(_forget, last, user))
    if last:
        await asyncio.gather(*last.values())
    return summary
