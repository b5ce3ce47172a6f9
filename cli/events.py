"""The commands that put events and profile changes in: event, profile, ingest, serve."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client

from cli.not_routed import reach, say_not_routed
from connection import client_for, connect_settings
from ingestion import retired
from ingestion.pipeline import Ingestion
from ingestion.router import Router
from journeys.events import Event, Routed, check_event, check_name, listens_to
from journeys.inputs import json_object, shown
from journeys.language.limits import MAX_PROFILE_BYTES, LimitExceeded
from journeys.language.models import Journey
from journeys.language.problems import UsageError
from journeys.settings import Settings
from journeys.store.database import Store
from journeys.validation.catalog import catalog
from telemetry.logs import configure_logging


def _catalog(folder: str | None, settings: Settings) -> list[Journey]:
    """The journeys events are routed to. A broken file is named on stderr and skipped: the
    valid journeys keep routing (exit events above all). None valid at all is a usage error,
    unless the store knows journeys that left the catalog: their users still get their events."""
    found = catalog(folder or settings.journeys_dir)
    warning = found.warning()
    if not found.journeys and warning and not retired.any_entered(settings.store_url):
        raise UsageError(f"no journey of the catalog can route events: {warning}")
    if warning:
        print(warning, file=sys.stderr)
    return list(found.journeys)


def _event(args: argparse.Namespace) -> Event:
    """The event as given on the command line, checked before anything reaches Temporal."""
    try:
        event = Event(id=f"cli-{uuid.uuid4()}" if args.id is None else args.id, name=args.event,
                      user_id=args.user,
                      properties=json_object(args.props, "--props"), time=datetime.now(UTC))
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"bad event: {fields}") from None
    try:
        check_event(event)
    except LimitExceeded as exc:
        raise UsageError(str(exc)) from None
    return event


def _print_routed(routed: list[Routed], as_json: bool) -> None:
    if as_json:
        print(json.dumps([r.model_dump(exclude_none=True) for r in routed], indent=2))
    for r in [] if as_json else routed:
        error = f"  {r.error}" if r.error else ""
        print(shown(f"{r.action:<13} {r.journey_id:<28} {r.workflow_id}{error}"))
    if not routed and not as_json:
        print("no journey starts, waits or exits on this event")


def _name_hint(name: str, journeys: list[Journey]) -> str | None:
    """'added to cart' when the catalog says 'Added To Cart': the event reached nobody."""
    def folded(text: str) -> str:
        return "".join(ch for ch in text.casefold() if ch.isalnum())

    known = {n for j in journeys for n in (*j.trigger_events, *listens_to(j), *j.events)}
    alike = sorted(n for n in known if folded(n) == folded(name) and n != name)
    return f"did you mean {' or '.join(repr(n) for n in alike)}? event names match exactly" if alike else None


def _ingestion(client: Client, settings: Settings, store: Store, folder: str | None) -> Ingestion:
    router = Router(client, settings.task_queue, receipts=store, legacy_ids=settings.legacy_ids,
                    priority=settings.task_priority,
                    send_timeout=settings.send_timeout)
    return Ingestion(router, store, folder or settings.journeys_dir, deadline=settings.route_timeout,
                     behaviour_days=settings.behaviour_days)


async def event_command(args: argparse.Namespace, settings: Settings) -> int:
    event = _event(args)
    profile = json_object(args.profile, "--profile", MAX_PROFILE_BYTES)
    journeys = _catalog(args.journeys, settings)
    store = Store(settings.store_url)
    if (client := await reach(settings, f"event {event.id} of {event.user_id}")) is None:
        return 1
    try:
        routed = await _ingestion(client, settings, store, args.journeys).track(event, profile)
    except LimitExceeded as exc:  # the profile, merged, is over its limit: nothing was routed
        raise UsageError(str(exc)) from None
    except Exception as exc:  # Temporal or the store unreachable, locked, past the deadline
        return say_not_routed(event, None, exc)
    _print_routed(routed, args.json)
    if not routed and (hint := _name_hint(event.name, journeys)):
        print(hint, file=sys.stderr)
    return say_not_routed(event, routed)


def _update_profile(store: Store, user_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    try:
        return store.update_profile(user_id, changes)
    except LimitExceeded as exc:
        raise UsageError(str(exc)) from None


async def profile_command(args: argparse.Namespace, settings: Settings) -> int:
    check_user(args.user)
    changes = json_object(args.set, "--set", MAX_PROFILE_BYTES)
    _catalog(args.journeys, settings)
    store = Store(settings.store_url)
    client = await connect_client(settings)
    merged = _update_profile(store, args.user, changes)
    ingestion = _ingestion(client, settings, store, args.journeys)
    routed = await ingestion.router.route_profile(ingestion.index().for_profile(changes), args.user,
                                                  changes)
    routed += await ingestion.profile_retired(args.user, changes)  # journeys that left the catalog
    print(json.dumps(merged, indent=2, ensure_ascii=False))
    if routed:
        _print_routed(routed, as_json=False)
    return 1 if any(r.action == "failed" for r in routed) else 0


def check_user(user: str) -> None:
    try:
        check_name(user, "user id")
    except LimitExceeded as exc:
        raise UsageError(str(exc)) from None


async def ingest_command(args: argparse.Namespace, settings: Settings) -> int:
    """Events from a file (or -), one JSON object a line; a summary; exit 1 if a line was refused."""
    from rich.console import Console
    from rich.progress import Progress

    from ingestion.files import ingest  # (only here: ``event`` and ``profile`` start faster)
    from ingestion.lines import read_lines

    if args.concurrency < 1:
        raise UsageError("--concurrency: at least 1")
    _catalog(args.journeys, settings)
    store = Store(settings.store_url)
    if (client := await reach(settings, f"{args.file}: no line")) is None:
        return 1
    ingestion = _ingestion(client, settings, store, args.journeys)
    with contextlib.ExitStack() as stack:
        lines = read_lines(sys.stdin.buffer if args.file == "-" else stack.enter_context(_open(args.file)))
        bar = (stack.enter_context(Progress(transient=True, console=Console(stderr=True)))
               if sys.stderr.isatty() else None)
        task = bar.add_task("ingesting", total=None) if bar else None
        summary = await ingest(ingestion, lines, args.concurrency,
                               (lambda n: bar.advance(task, n)) if bar and task is not None else None)
    for refused in summary.refused:
        print(f"refused  {refused}", file=sys.stderr)
    for failed in summary.failed:
        print(shown(f"not routed  {failed}"), file=sys.stderr)
    skipped = f"skipped {summary.skipped} (page, screen, alias, group, anonymous), " if summary.skipped \
        else ""
    print(f"read {summary.read}, started {summary.started}, signalled {summary.signalled}, "
          f"ignored {summary.ignored}, {skipped}refused {len(summary.refused)}, "
          f"failed {len(summary.failed)}")
    return 1 if summary.refused or summary.failed else 0


def _open(path: str) -> Any:
    try:
        return Path(path).open("rb")  # bytes: a line that is no UTF-8 is refused, not fatal
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None


async def connect_client(settings: Settings) -> Client:
    return await client_for(settings)


async def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    """Segment's HTTP tracking API (ingestion/http_api.py) on uvicorn, until interrupted."""
    import uvicorn

    from ingestion.guard import api_config
    from ingestion.http_api import check_bind, create_app

    configure_logging(format=settings.log_format)  # uvicorn's lines and tracebacks, as the worker's
    check_bind(args.host, settings.write_key)
    _catalog(args.journeys, settings)  # a catalog that cannot route is said now, in one line
    try:
        client = await connect_client(settings)
    except UsageError as exc:
        if not str(exc).startswith("cannot reach Temporal"):
            raise  # a configuration that cannot work (no such namespace): said at once
        # Temporal down at start is what /ready and 503 are for: serve, and connect when it is up.
        logging.getLogger("journeys.http").warning(
            "Temporal unreachable at start: events are answered 503 and /ready 503 until it "
            "answers", extra={"error": str(exc)})
        client = await connect_settings(settings, lazy=True)

    async def connected() -> Client:
        return client

    app = create_app(settings, args.journeys, connected)
    await uvicorn.Server(api_config(app, settings, host=args.host, port=args.port,
                                    log_level="info")).serve()
    return 0


