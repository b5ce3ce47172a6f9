"""The command line's parser: every command, and where its code is (this room)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from temporalio.service import RPCError

from cli import funnel as funnel_commands
from cli import operations as operate_commands
from cli.catalog import cmd_preview, cmd_schema, cmd_validate
from cli.events import event_command, ingest_command, profile_command, serve_command
from cli.records import cmd_inbox, cmd_outbox, cmd_providers, status_command
from connection import address_of
from journeys.inputs import described
from journeys.language.problems import UsageError
from journeys.settings import Settings, load_settings

DESCRIPTION = "The journeys command line: validate, preview, schema, graph, and the client commands."


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
    parser = argparse.ArgumentParser(prog="starter.py", description=DESCRIPTION)
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
    p.set_defaults(func=_client(event_command))

    p = sub.add_parser("ingest", help="events from a file, one JSON object a line (- for stdin)")
    p.add_argument("file")
    p.add_argument("--concurrency", type=int, default=64, help="events in flight (default 64)")
    p.add_argument("--journeys")
    p.set_defaults(func=_client(ingest_command))

    p = sub.add_parser("profile", help="set profile properties (may start profile-date journeys)")
    p.add_argument("user")
    p.add_argument("--set", required=True, help="properties: a JSON object, @file or - (stdin)")
    p.add_argument("--journeys")
    p.set_defaults(func=_client(profile_command))

    p = sub.add_parser("serve", help="Segment's HTTP tracking API: track, identify, batch")
    p.add_argument("--host", default="127.0.0.1",
                   help="default 127.0.0.1; another host needs JOURNEYS_WRITE_KEY")
    p.add_argument("--port", type=int, default=8000, help="default 8000")
    p.add_argument("--journeys")
    p.set_defaults(func=_client(serve_command))

    p = sub.add_parser("status", help="the user's journeys: where they are, with which event")
    p.add_argument("user")
    p.add_argument("--journeys")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_client(status_command))

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


