"""The command line's parser: every command, and where its code is (this room).

A command's module is imported when the command runs, not when the parser is built: a command
loads only what it uses (``validate`` no Temporal client, ``outbox`` no Jinja), and the parser
itself loads none of them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from journeys.language.problems import UsageError

DESCRIPTION = "The journeys command line: validate, preview, schema, graph, and the client commands."


def _command(target: str) -> Any:
    """``module:function`` of this room, imported now."""
    module, name = target.split(":")
    return getattr(importlib.import_module(f"cli.{module}"), name)


def _lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """The command ``module:function``, imported when it runs."""
    def run(args: argparse.Namespace) -> int:
        result: int = _command(target)(args)
        return result
    return run


def _client(target: str) -> Callable[[argparse.Namespace], int]:
    """The client command ``module:function`` (async, given the settings), imported when it runs;
    a Temporal that cannot be reached is a usage error that names its address."""
    def run(args: argparse.Namespace) -> int:
        from temporalio.service import RPCError

        from connection import address_of
        from journeys.inputs import described
        from journeys.settings import load_settings

        settings = load_settings()
        try:
            result: int = asyncio.run(_command(target)(args, settings))
            return result
        except RPCError as exc:
            raise UsageError(f"Temporal at {address_of(settings)}: {described(exc)}") from None
    return run


def _add_waiting_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-waiting", action="store_true",
                        help="do not ask Temporal who waits at each node now (store only)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starter.py", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check journey files against every rule")
    p.add_argument("paths", nargs="+", help="journey files or folders")
    p.add_argument("--json", action="store_true", help="print a JSON list of problems")
    p.set_defaults(func=_lazy("catalog:cmd_validate"))

    p = sub.add_parser("preview", help="render a node's message for a sample event and profile")
    p.add_argument("file")
    p.add_argument("node")
    p.add_argument("--event", help="the personalization event's name")
    p.add_argument("--props", help="the event's properties, a JSON object")
    p.add_argument("--profile", help="the profile's properties, a JSON object")
    p.add_argument("--locale", help="the user's locale (fr, pt-BR): its version and formats")
    p.add_argument("--variant", help="a content variant by name (default: the one a user 'preview' gets)")
    p.add_argument("--catalog", action="append", metavar="NAME=FILE",
                   help="items the message's catalog() reads, from a file (default: the local store's)")
    p.add_argument("--catalog-key", default="id", help="the items' id field in those files (default id)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_lazy("catalog:cmd_preview"))

    p = sub.add_parser("schema", help="print the JSON Schema of the journey format")
    p.set_defaults(func=_lazy("catalog:cmd_schema"))

    p = sub.add_parser("graph", help="print a journey as a Mermaid flowchart")
    p.add_argument("file")
    p.add_argument("--stats", action="store_true", help="with the funnel's counts from the store")
    _add_waiting_flag(p)
    p.set_defaults(func=_lazy("funnel:cmd_graph"))

    p = sub.add_parser("event", help="an event of a user: starts, wakes or ends their journeys")
    p.add_argument("user")
    p.add_argument("event")
    p.add_argument("--props", help="the event's properties: a JSON object, @file or - (stdin)")
    p.add_argument("--profile", help="profile properties to set first: JSON, @file or -")
    p.add_argument("--id", help="the event's id: processed once per user and journey; "
                                "default: a new one")
    p.add_argument("--journeys", help="the journey catalog folder (default: $JOURNEYS_DIR)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_client("events:event_command"))

    p = sub.add_parser("ingest", help="events from a file, one JSON object a line (- for stdin)")
    p.add_argument("file")
    p.add_argument("--concurrency", type=int, default=64, help="events in flight (default 64)")
    p.add_argument("--journeys")
    p.set_defaults(func=_client("events:ingest_command"))

    p = sub.add_parser("profile", help="set profile properties (may start profile-date journeys)")
    p.add_argument("user")
    p.add_argument("--set", required=True, help="properties: a JSON object, @file or - (stdin)")
    p.add_argument("--journeys")
    p.set_defaults(func=_client("events:profile_command"))

    p = sub.add_parser("serve", help="Segment's HTTP tracking API: track, identify, batch")
    p.add_argument("--host", default="127.0.0.1",
                   help="default 127.0.0.1; another host needs JOURNEYS_WRITE_KEY")
    p.add_argument("--port", type=int, default=8000, help="default 8000")
    p.add_argument("--journeys")
    p.set_defaults(func=_client("events:serve_command"))

    p = sub.add_parser("status", help="the user's journeys: where they are, with which event")
    p.add_argument("user")
    p.add_argument("--journeys")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_client("records:status_command"))

    p = sub.add_parser("subscription", help="a user's subscriptions; --unsubscribe or --subscribe "
                                            "a channel (default every one) or one topic of it")
    p.add_argument("user")
    p.add_argument("--channel", help="push, email, sms, ... (default: every channel)")
    p.add_argument("--topic", help="one topic of the channel (newsletter); default: the whole channel")
    change = p.add_mutually_exclusive_group()
    change.add_argument("--unsubscribe", action="store_true")
    change.add_argument("--subscribe", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_lazy("subscriptions:cmd_subscription"))

    p = sub.add_parser("catalog", help="catalogs of items templates read (catalog('products', id)): "
                                        "import NAME FILE --key FIELD, list, show NAME [ID]")
    p.add_argument("action", choices=("import", "list", "show"))
    p.add_argument("name", nargs="?", help="the catalog (import, show)")
    p.add_argument("file", nargs="?", help="import: a .csv, .json or .ndjson file; show: an item's id")
    p.add_argument("--key", default="id", help="import: the field that is each item's id (default id)")
    p.add_argument("--journeys", help="import: the journey folder whose catalog file types CSV columns "
                                      "(default: JOURNEYS_DIR)")
    p.add_argument("--after", help="show: items after this id")
    p.add_argument("--limit", type=int, default=100, help="show: items a page (default 100)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_lazy("catalogs:cmd_catalog"))

    p = sub.add_parser("audience", help="an audience journey: its schedule and occurrences; --count "
                                         "the users its segment matches now; pause, resume, trigger, cancel")
    p.add_argument("journey")
    p.add_argument("--journeys", help="the journey folder (default: JOURNEYS_DIR)")
    what = p.add_mutually_exclusive_group()
    for flag, words in (("--count", "how many users the segment matches now, and the query's time"),
                        ("--pause", "pause the schedule"), ("--resume", "resume the schedule"),
                        ("--trigger", "run an occurrence now"),
                        ("--cancel", "cancel the running occurrence (users it entered go on)")):
        what.add_argument(flag, action="store_true", help=words)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_client("audience:audience_command"))

    p = sub.add_parser("outbox", help="the messages recorded, sent or skipped")
    p.add_argument("--user")
    p.add_argument("--journey")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_lazy("records:cmd_outbox"))

    p = sub.add_parser("stats", help="a journey's funnel: entries, waits, messages, conversions")
    p.add_argument("journey")
    p.add_argument("--journeys", help="the catalog folder (default JOURNEYS_DIR)")
    p.add_argument("--json", action="store_true")
    _add_waiting_flag(p)
    p.set_defaults(func=_lazy("funnel:cmd_stats"))

    p = sub.add_parser("report", help="a journey's funnel as one self-contained HTML page")
    p.add_argument("journey")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument("--journeys", help="the catalog folder (default JOURNEYS_DIR)")
    _add_waiting_flag(p)
    p.set_defaults(func=_lazy("funnel:cmd_report"))

    p = sub.add_parser("list", help="journeys in flight or closed (visibility): node, event, wake-up")
    p.add_argument("--journey")
    p.add_argument("--node")
    p.add_argument("--user")
    p.add_argument("--status", choices=["running", "closed"])
    p.add_argument("--limit", type=int, default=50, help="rows at most (default 50)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_lazy("operations:cmd_list"))

    p = sub.add_parser("exit", help="take a user (or everyone: --journey J --all) out now")
    p.add_argument("user", nargs="?")
    p.add_argument("--journey", help="only this journey (with --all: required)")
    p.add_argument("--all", action="store_true", help="everyone in --journey")
    p.add_argument("--reason", default="no reason given", help="shown in status, outbox and UI")
    p.add_argument("--journeys", help="the catalog folder (default JOURNEYS_DIR)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_lazy("operations:cmd_exit"))

    p = sub.add_parser("replay", help="replay journeys' histories from the server on this code "
                                      "(before a deploy); exit 1 if one would break")
    p.add_argument("--journey")
    p.add_argument("--limit", type=int, default=100, help="histories at most (default 100)")
    p.add_argument("--closed-within", type=float, default=24.0, metavar="HOURS",
                   help="also journeys closed this recently (default 24)")
    p.set_defaults(func=_lazy("operations:cmd_replay"))

    p = sub.add_parser("intellinode", help="an IntelliNODE's shares; change them live")
    p.add_argument("journey")
    p.add_argument("node")
    change = p.add_mutually_exclusive_group()
    change.add_argument("--percent", metavar="a=70,b=30", help="fixed shares from now on")
    change.add_argument("--winner", metavar="PATH", help="everyone down one path from now on")
    change.add_argument("--reset", action="store_true", help="back to the journey file's mode")
    p.add_argument("--journeys", help="the catalog folder (default JOURNEYS_DIR)")
    p.set_defaults(func=_lazy("operations:cmd_intellinode"))

    p = sub.add_parser("variants", help="a node's content variants side by side; --winner sends "
                                         "everyone one from now on")
    p.add_argument("journey")
    p.add_argument("node")
    change = p.add_mutually_exclusive_group()
    change.add_argument("--winner", metavar="NAME", help="everyone gets this variant from now on")
    change.add_argument("--reset", action="store_true", help="back to the variants' weights")
    p.add_argument("--journeys", help="the catalog folder (default JOURNEYS_DIR)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_lazy("variants:cmd_variants"))

    p = sub.add_parser("providers", help="which provider serves each channel, and what is missing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_lazy("records:cmd_providers"))

    p = sub.add_parser("inbox", help="a user's in-app inbox (reading never removes)")
    p.add_argument("user")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_lazy("records:cmd_inbox"))

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


