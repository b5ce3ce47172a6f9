"""The operator's commands of ``starter.py``: ``list``, ``exit``, ``replay`` and ``intellinode``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import timedelta

from rich.progress import Progress
from temporalio.service import RPCError

from connection import address_of, client_for
from journeys.inputs import described, printable, shown
from journeys.language.problems import UsageError
from journeys.settings import Settings, load_settings
from journeys.store.database import Store
from journeys.validation.catalog import catalog
from operate.exits import Exited, exit_all, exit_user
from operate.listing import format_listed, list_journeys

# ``replay`` (the workflows and the sandbox) and ``intellinode`` (the funnel) import theirs when
# they run: ``list`` and ``exit`` need neither.


def cmd_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit: give 1 or more")
    settings = load_settings()

    async def run() -> int:
        client = await client_for(settings)
        rows, more = await list_journeys(client, settings.task_queue, journey=args.journey,
                                         node=args.node, user=args.user, status=args.status,
                                         limit=args.limit)
        if args.json:
            print(json.dumps({"journeys": [r.model_dump(mode="json") for r in rows], "more": more},
                             indent=2, ensure_ascii=False))
        else:
            print(shown(format_listed(rows, more)))
        return 0

    return asyncio.run(run())


def cmd_exit(args: argparse.Namespace) -> int:
    if args.all == bool(args.user):
        raise UsageError("give a USER, or --journey J --all for everyone in a journey")
    if args.all and not args.journey:
        raise UsageError("--all needs --journey: everyone in which journey?")
    settings = load_settings()
    try:
        done = asyncio.run(_exit(args, settings))
    except RPCError as exc:
        raise UsageError(f"Temporal at {address_of(settings)}: {described(exc)}") from None
    failed = [d for d in done if d.outcome == "failed"]
    if args.json:
        print(json.dumps([d.model_dump() for d in done], indent=2, ensure_ascii=False))
    elif args.user:
        for d in done:
            where = f" at {printable(d.node)}" if d.node else ""
            error = f": {d.error}" if d.error else ""
            print(f"{printable(d.outcome):<9} {printable(d.journey_id):<28} "
                  f"{printable(d.workflow_id)}{where}{error}")
            if d.warning:
                print(f"warning: {printable(d.warning)}", file=sys.stderr)
        if not done:
            print(f"user {printable(args.user)} is in no running journey")
    exited = sum(d.outcome == "exited" for d in done)
    if args.all and not args.json:
        for d in failed:
            print(f"failed    {printable(d.workflow_id)}: {d.error}", file=sys.stderr)
        print(f"{exited} exited, {len(failed)} failed, "
              f"{len(done) - exited - len(failed)} already leaving or ended")
    return 1 if failed else 0


async def _exit(args: argparse.Namespace, settings: Settings) -> list[Exited]:
    client = await client_for(settings)
    if args.all:
        with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task(f"exiting {args.journey}", total=None)
            return await exit_all(client, args.journey, args.reason,
                                  lambda n, total: bar.update(task, completed=n, total=total))
    # A journey that left the catalog (renamed, new id, broken) is found by its runs, not its file.
    found = catalog(args.journeys or settings.journeys_dir)
    journeys = [j for j in found.journeys if args.journey in (None, j.id)]
    return await exit_user(client, journeys, args.user, settings.task_queue,
                           Store(settings.store_url), args.reason, legacy_ids=settings.legacy_ids,
                           catalog=found, journey_id=args.journey)


def cmd_replay(args: argparse.Namespace) -> int:
    from journeys.store.versions import VERSIONS
    from operate.replay import replay_journeys

    if args.limit < 1:
        raise UsageError("--limit: give 1 or more")
    settings = load_settings()

    async def run() -> int:
        client = await client_for(settings)
        VERSIONS.use(Store(settings.store_url))  # the versions the runs entered (journey_versions)
        found = await replay_journeys(client, journey=args.journey, limit=args.limit,
                                      closed_within=timedelta(hours=args.closed_within))
        for workflow_id, why in found.broken:
            print(shown(f"would break: {workflow_id}: {why}"))
        print(f"replayed {found.checked} histories on this code: {len(found.broken)} would break")
        return 1 if found.broken else 0

    return asyncio.run(run())


def cmd_intellinode(args: argparse.Namespace) -> int:
    """Change an IntelliNODE live (from the next user on), or show its shares and results."""
    from cli.funnel import from_catalog
    from journeys.store import intellinode

    settings = load_settings()
    journey = from_catalog(args.journey, args.journeys, settings)
    print(shown(intellinode.apply(Store(settings.store_url), journey, args.node,
                                  percent=args.percent, winner=args.winner, reset=args.reset)))
    return 0
