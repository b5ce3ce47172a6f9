"""The funnel's commands of ``starter.py``: ``stats``, ``graph FILE --stats`` and ``report``.

They read the store. Temporal is asked only for who waits at each node now (visibility), with a
short deadline: a server that does not answer in time leaves that column out ('-'), with a line
on stderr, and ``--no-waiting`` does not ask it at all.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from temporalio.service import RPCError

from cli.catalog import cmd_graph as cmd_plain_graph
from connection import address_of, connect_settings
from journeys.funnel.graph import to_mermaid
from journeys.funnel.report import render_report
from journeys.funnel.stats import JourneyStats, format_stats, journey_stats
from journeys.inputs import described, shown
from journeys.language.loader import load_file
from journeys.language.models import Journey
from journeys.language.problems import UsageError
from journeys.settings import Settings, load_settings
from journeys.store.database import Store
from journeys.validation.catalog import catalog
from operate.status import wait_nodes, waiting_now

#: Seconds to reach Temporal, then to count who waits where, before going on without it.
VISIBILITY_DEADLINE = 5.0
COUNT_DEADLINE = 5.0


async def _waiting(settings: Settings, journey: Journey) -> dict[str, int] | None:
    """Who waits at each node now, or None with a line on stderr that says which part did not
    answer (reaching Temporal, or counting), within which deadline, and the error's name."""
    address, without = address_of(settings), "counted without who waits now ('-')"
    try:
        client = await asyncio.wait_for(connect_settings(settings), VISIBILITY_DEADLINE)
    except (RuntimeError, RPCError, TimeoutError) as exc:
        within = f" within {VISIBILITY_DEADLINE:g} s" if isinstance(exc, TimeoutError) else ""
        print(f"Temporal at {address} could not be reached{within} ({described(exc)}): {without}",
              file=sys.stderr)
        return None
    try:
        return await asyncio.wait_for(waiting_now(client, journey), COUNT_DEADLINE)
    except TimeoutError as exc:
        print(f"Temporal at {address}: counting who waits at the {len(wait_nodes(journey))} wait "
              f"nodes of {journey.id} did not finish within {COUNT_DEADLINE:g} s "
              f"({described(exc)}): {without}", file=sys.stderr)
    except (RuntimeError, RPCError) as exc:
        print(f"Temporal at {address}: counting who waits now failed ({described(exc)}): {without}",
              file=sys.stderr)
    return None


def _stats(args: argparse.Namespace, settings: Settings, journey: Journey) -> JourneyStats:
    waiting = None if args.no_waiting else asyncio.run(_waiting(settings, journey))
    return journey_stats(Store(settings.store_url), journey, waiting)


def from_catalog(journey_id: str, folder: str | None, settings: Settings) -> Journey:
    """The journey of the folder's catalog (its broken files named on stderr), or a usage error."""
    found = catalog(folder or settings.journeys_dir)
    if warning := found.warning():
        print(warning, file=sys.stderr)
    journey = next((j for j in found.journeys if j.id == journey_id), None)
    if journey is None:
        raise UsageError(f"no journey {journey_id!r} in the catalog")
    return journey


def cmd_stats(args: argparse.Namespace) -> int:
    settings = load_settings()
    stats = _stats(args, settings, from_catalog(args.journey, args.journeys, settings))
    print(stats.model_dump_json(indent=2) if args.json else shown(format_stats(stats)))
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    """The flowchart of a journey file; with ``--stats``, its counts from the store."""
    if not args.stats:
        return cmd_plain_graph(args)
    loaded = load_file(Path(args.file))
    if loaded.journey is None:
        raise UsageError("\n".join(str(p) for p in loaded.problems))
    print(to_mermaid(loaded.journey, _stats(args, load_settings(), loaded.journey)), end="")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    settings = load_settings()
    journey = from_catalog(args.journey, args.journeys, settings)
    stats = _stats(args, settings, journey)
    page = render_report(Store(settings.store_url), journey, stats)
    try:
        Path(args.out).write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote {args.out} ({len(page.encode()) // 1024 + 1} KB)")
    return 0
