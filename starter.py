"""The journeys command line: validate, preview, schema, graph, and the client commands.

    python starter.py validate examples/
    python starter.py preview examples/abandoned-cart.yaml push-reminder --props '{...}'
    python starter.py event user-1 "Added To Cart" --props '{"product_name": "iPhone 14"}'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress
from temporalio.client import Client
from temporalio.service import RPCError

from activities.providers.registry import build_providers, choices, close_providers
from connection import address_of, client_for, connect_settings
from ingestion import retired
from ingestion.cli import reach, say_not_routed
from ingestion.files import ingest
from ingestion.lines import read_lines
from ingestion.pipeline import Ingestion
from ingestion.router import Router
from journeys.catalog import catalog
from journeys.commands import cmd_preview, cmd_schema, cmd_validate
from journeys.events import Event, Routed, check_event, check_name, listens_to
from journeys.inputs import described, json_object, printable, shown
from journeys.limits import MAX_PROFILE_BYTES, LimitExceeded
from journeys.models import Journey
from journeys.problems import UsageError
from journeys.settings import Settings, load_settings
from journeys.store import Store
from operate import commands as operate_commands
from operate import funnel_commands
from operate.status import format_status, user_status
from service.runtime import leave
from telemetry.logs import configure_logging

# --- the client commands: they talk to Temporal and the stores -----------------------------

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
                    send_timeout=settings.send_timeout)
    return Ingestion(router, store, folder or settings.journeys_dir, deadline=settings.route_timeout)


async def _event_command(args: argparse.Namespace, settings: Settings) -> int:
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


async def _profile_command(args: argparse.Namespace, settings: Settings) -> int:
    _check_user(args.user)
    changes = json_object(args.set, "--set", MAX_PROFILE_BYTES)
    _catalog(args.journeys, settings)
    store = Store(settings.store_url)
    client = await _connect(settings)
    merged = _update_profile(store, args.user, changes)
    ingestion = _ingestion(client, settings, store, args.journeys)
    routed = await ingestion.router.route_profile(ingestion.index().for_profile(changes), args.user,
                                                  changes)
    routed += await ingestion.profile_retired(args.user, changes)  # journeys that left the catalog
    print(json.dumps(merged, indent=2, ensure_ascii=False))
    if routed:
        _print_routed(routed, as_json=False)
    return 1 if any(r.action == "failed" for r in routed) else 0


def _check_user(user: str) -> None:
    try:
        check_name(user, "user id")
    except LimitExceeded as exc:
        raise UsageError(str(exc)) from None


async def _ingest_command(args: argparse.Namespace, settings: Settings) -> int:
    """Events from a file (or -), one JSON object a line; a summary; exit 1 if a line was refused."""
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


async def _status_command(args: argparse.Namespace, settings: Settings) -> int:
    _check_user(args.user)
    found = catalog(args.journeys or settings.journeys_dir)  # none valid: the user's runs still show
    if warning := found.warning():
        print(warning, file=sys.stderr)
    store = Store(settings.store_url)
    client = await _connect(settings)
    rows = await user_status(client, found.journeys, args.user, settings.task_queue, store=store,
                             legacy_ids=settings.legacy_ids, catalog=found)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2, ensure_ascii=False))
    elif not rows:
        print(f"user {printable(args.user)} is in no journey")
    for row in [] if args.json else rows:
        print(format_status(row))
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    rows = Store(load_settings().store_url).outbox_list(user_id=args.user, journey_id=args.journey)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2, ensure_ascii=False))
        return 0
    for row in rows:
        sent = row.status in {"delivered", "kept"}
        text = next(iter(row.content.values()), "") if sent else row.reason or ""
        print(f"{row.created_at:%Y-%m-%d %H:%M:%S}  {printable(row.user_id):<12} "
              f"{printable(row.journey_id)}/{printable(row.node_id)} {printable(row.channel):<8} "
              f"{printable(row.status):<9} {printable(text)}")
    return 0


async def _connect(settings: Settings) -> Client:
    return await client_for(settings)


def cmd_providers(args: argparse.Namespace) -> int:
    """Which provider serves each channel, and which settings would bring its vendor in; a
    vendor setting that cannot work is said as the worker would say it (exit 2)."""
    settings = load_settings()
    rows = choices(settings)
    store = Store(settings.store_url)
    try:
        asyncio.run(close_providers(build_providers(settings, store)))
    finally:
        store.engine.dispose()
    if args.json:
        print(json.dumps([{"channel": c.channel.value, "provider": c.provider, "vendor": c.vendor,
                           "missing": list(c.missing)} for c in rows], indent=2))
        return 0
    for c in rows:
        needs = f"  ({c.vendor} needs {', '.join(c.missing)})" if c.missing else ""
        print(f"{c.channel.value:<10} {c.provider}{needs}")
    if not settings.smtp_host:
        print("(worker.py --dev sends email to its local mail sink: <data dir>/mail/)")
    return 0


def cmd_inbox(args: argparse.Namespace) -> int:
    """The user's in-app inbox (in_app, web_popup, app_inbox messages), oldest first."""
    messages = Store(load_settings().store_url).inbox_list(args.user)
    if args.json:
        print(json.dumps([m.model_dump(mode="json") for m in messages], indent=2, ensure_ascii=False))
        return 0
    for m in messages:
        text = m.content.get("title") or m.content.get("body", "")
        print(shown(f"{m.created_at:%Y-%m-%d %H:%M:%S}  {m.journey_id}/{m.node_id} {m.channel:<10} {text}"))
    if not messages:
        print(f"the inbox of {args.user} is empty")
    return 0


async def _serve_command(args: argparse.Namespace, settings: Settings) -> int:
    """Segment's HTTP tracking API (ingestion/http_api.py) on uvicorn, until interrupted."""
    import uvicorn

    from ingestion.guard import api_config
    from ingestion.http_api import check_bind, create_app

    configure_logging(format=settings.log_format)  # uvicorn's lines and tracebacks, as the worker's
    check_bind(args.host, settings.write_key)
    _catalog(args.journeys, settings)  # a catalog that cannot route is said now, in one line
    try:
        client = await _connect(settings)
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


def _client(command: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]
            ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = load_settings()
        try:
            return asyncio.run(command(args, settings))
        except RPCError as exc:
            raise UsageError(f"Temporal at {address_of(settings)}: {described(exc)}") from None
    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starter.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check journey files against every rule")
    p.add_argument("paths", nargs="+", help="journey files or folders")
    p.add_argument("--json", action="store_true", help="print a JSON list of problems")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("preview", help="render a node's message for a sample event and profile")
    p.add_argument("file")
    p.add_argument("node")
    p.add_argument("--event", help="the personalization event's name")
    p.add_argument("--props", help="the event's properties, a JSON object")
    p.add_argument("--profile", help="the profile's properties, a JSON object")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("schema", help="print the JSON Schema of the journey format")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("graph", help="print a journey as a Mermaid flowchart")
    p.add_argument("file")
    p.add_argument("--stats", action="store_true", help="with the funnel's counts from the store")
    funnel_commands.add_waiting_flag(p)
    p.set_defaults(func=funnel_commands.cmd_graph)

    p = sub.add_parser("event", help="an event of a user: starts, wakes or ends their journeys")
    p.add_argument("user")
    p.add_argument("event")
    p.add_argument("--props", help="the event's properties: a JSON object, @file or - (stdin)")
    p.add_argument("--profile", help="profile properties to set first: JSON, @file or -")
    p.add_argument("--id", help="the event's id: processed once per user and journey; "
                                "default: a new one")
    p.add_argument("--journeys", help="the journey catalog folder (default: $JOURNEYS_DIR)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_client(_event_command))

    p = sub.add_parser("ingest", help="events from a file, one JSON object a line (- for stdin)")
    p.add_argument("file")
    p.add_argument("--concurrency", type=int, default=64, help="events in flight (default 64)")
    p.add_argument("--journeys")
    p.set_defaults(func=_client(_ingest_command))

    p = sub.add_parser("profile", help="set profile properties (may start profile-date journeys)")
    p.add_argument("user")
    p.add_argument("--set", required=True, help="properties: a JSON object, @file or - (stdin)")
    p.add_argument("--journeys")
    p.set_defaults(func=_client(_profile_command))

    p = sub.add_parser("serve", help="Segment's HTTP tracking API: track, identify, batch")
    p.add_argument("--host", default="127.0.0.1",
                   help="default 127.0.0.1; another host needs JOURNEYS_WRITE_KEY")
    p.add_argument("--port", type=int, default=8000, help="default 8000")
    p.add_argument("--journeys")
    p.set_defaults(func=_client(_serve_command))

    p = sub.add_parser("status", help="the user's journeys: where they are, with which event")
    p.add_argument("user")
    p.add_argument("--journeys")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_client(_status_command))

    p = sub.add_parser("outbox", help="the messages recorded, sent or skipped")
    p.add_argument("--user")
    p.add_argument("--journey")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_outbox)

    funnel_commands.add_parsers(sub)  # stats, report
    operate_commands.add_parsers(sub)  # list, exit, replay, intellinode

    p = sub.add_parser("providers", help="which provider serves each channel, and what is missing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_providers)

    p = sub.add_parser("inbox", help="a user's in-app inbox (reading never removes)")
    p.add_argument("user")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inbox)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head`: the reader has all it wanted
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more may reach the pipe
        return 0


if __name__ == "__main__":
    leave(main())
