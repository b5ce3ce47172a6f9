"""The journeys command line: validate, preview, schema, graph, and the client commands.

    python starter.py validate examples/
    python starter.py preview examples/abandoned-cart.yaml push-reminder --props '{...}'
    python starter.py event user-1 "Added To Cart" --props '{"product_name": "iPhone 14"}'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from journeys.graph import to_mermaid
from journeys.loader import load_file
from journeys.models import ONLINE_CHANNELS, EngagementNode, Journey, ProfileUpdateNode
from journeys.personalize import MissingValue, TemplateError, render, render_message
from journeys.problems import UsageError
from journeys.scope import sources_by_node
from journeys.validate import validate_file, validate_paths


def _json_arg(text: str | None, what: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what}: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what}: give a JSON object, e.g. '{{\"name\": \"value\"}}'")
    return value


def cmd_validate(args: argparse.Namespace) -> int:
    results = validate_paths(args.paths)
    if args.json:
        print(json.dumps([p.model_dump() for _, problems in results for p in problems], indent=2))
    else:
        for loaded, problems in results:
            if not problems:
                print(f"ok {loaded.path}")
            for problem in problems:
                print(problem)
    return 1 if any(problems for _, problems in results) else 0


def _valid_journey(path: str) -> Journey:
    loaded, problems = validate_file(Path(path))
    if problems or loaded.journey is None:
        raise UsageError("\n".join(str(p) for p in problems) or f"{path}: not a journey")
    return loaded.journey


def cmd_preview(args: argparse.Namespace) -> int:
    journey = _valid_journey(args.file)
    try:
        node = journey.node(args.node)
    except KeyError:
        raise UsageError(f"{args.file}: no node '{args.node}'") from None
    in_scope = sorted({s.event for s in sources_by_node(journey).get(node.id, ()) if s.event})
    if args.event and in_scope and args.event not in in_scope:
        raise UsageError(f"{args.file}: node '{node.id}' is personalized with "
                         f"{' or '.join(repr(e) for e in in_scope)}, not '{args.event}'")
    event = _json_arg(args.props, "--props") if in_scope else None
    profile = _json_arg(args.profile, "--profile")
    try:
        if isinstance(node, EngagementNode):
            online = node.channel in ONLINE_CHANNELS
            fields = render_message(node.channel, node.message, profile, None if online else event)
        elif isinstance(node, ProfileUpdateNode):
            fields = {f"set.{k}": render(v, profile, event) for k, v in node.set.items()}
        else:
            raise UsageError(f"{args.file}: node '{node.id}' is a {node.type} node: it has no message")
    except (MissingValue, TemplateError) as exc:
        print(f"{args.file}: node '{node.id}': not sent: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(fields, indent=2, ensure_ascii=False))
    else:
        for field, text in fields.items():
            print(f"{field}: {text}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    schema = Journey.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Journey"
    print(json.dumps(schema, indent=2))
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    loaded = load_file(Path(args.file))
    if loaded.journey is None:
        raise UsageError("\n".join(str(p) for p in loaded.problems))
    print(to_mermaid(loaded.journey), end="")
    return 0


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
    p.set_defaults(func=cmd_graph)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    code = main()
    # Leave without interpreter teardown: the Temporal client's threads can abort it
    # (sdk-python #300), turning a finished command into exit status 134.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
