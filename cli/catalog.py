"""The authoring commands of ``starter.py``: validate, preview, schema, graph.

They read journey files only: no Temporal, no store, so a marketer can run them anywhere
(``preview`` reads the catalog items its message names from ``--catalog`` files, else from the
local store if there is one).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

from journeys.events import personalization_event
from journeys.funnel.graph import to_mermaid
from journeys.inputs import json_object
from journeys.language.loader import load_file
from journeys.language.models import EngagementNode, Journey, ProfileUpdateNode
from journeys.language.problems import UsageError
from journeys.personalization.choice import DEFAULT, choose
from journeys.personalization.lookups import Fetch
from journeys.personalization.personalize import (
    MessageRefused,
    MissingValue,
    TemplateError,
    render,
    render_message,
)
from journeys.settings import load_settings
from journeys.validation.rules import journey_links
from journeys.validation.scope import sources_by_node
from journeys.validation.validate import UNREADABLE, exit_status, validate_file, validate_paths

#: What ``preview`` shows for a marketing email's ``unsubscribe_url``.
PREVIEW_LINK = "https://journeys.example/u/PREVIEW-TOKEN"  # (a send makes the user's own)


def cmd_validate(args: argparse.Namespace) -> int:
    """Every file answered: ok, its problems, or (on stderr, exit 2) why it cannot be read."""
    results = validate_paths(args.paths)
    if not results:
        print(f"no journey files in {' '.join(args.paths)}", file=sys.stderr)
    if args.json:
        print(json.dumps([p.model_dump() for _, problems in results for p in problems], indent=2))
    else:
        for loaded, problems in results:
            if not problems:
                print(f"ok {loaded.path}")
            for problem in problems:
                print(problem, file=sys.stderr if problem.code in UNREADABLE else sys.stdout)
    return exit_status(results)


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
    event = json_object(args.props, "--props") if in_scope else None
    profile = json_object(args.profile, "--profile")
    try:
        if isinstance(node, EngagementNode):
            # A marketing email's unsubscribe link: a stand-in.
            links = {name: PREVIEW_LINK for name in journey_links(journey, node)}
            if args.variant and args.variant not in {v.name for v in node.variants}:
                raise UsageError(f"{args.file}: node '{node.id}' has no variant '{args.variant}'")
            chosen = choose(node, profile, journey.id, "preview", args.variant, args.locale)
            if (node.variants or chosen.locale != DEFAULT) and not args.json:
                print(f"(version: {f'variant {chosen.variant}, ' if chosen.variant else ''}"
                      f"locale {chosen.locale})")
            profile = {**profile, "locale": args.locale} if args.locale else profile
            fields = render_message(node.channel, chosen.message, profile,
                                    personalization_event(node.channel, event), links,
                                    items=preview_items(args.catalog or [], args.catalog_key))
        elif isinstance(node, ProfileUpdateNode):
            fields = {}
            for prop, source in node.set.items():
                try:
                    fields[f"set.{prop}"] = render(source, profile, event)
                except MissingValue as exc:
                    raise MissingValue(exc.variable, f"set.{prop}") from None
        else:
            raise UsageError(
                f"{args.file}: node '{node.id}' is a {node.type} node: it has no message")
    except (MissingValue, TemplateError, MessageRefused) as exc:  # as the send would record it
        print(f"{args.file}: node '{node.id}': not sent: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(fields, indent=2, ensure_ascii=False))
    else:
        for field, text in fields.items():
            print(f"{field}: {text}")
    return 0


def preview_items(files: list[str], key: str) -> Fetch:
    """The catalog items preview renders with: those of ``--catalog NAME=FILE`` if given, else
    the local store's (if it exists: preview makes none)."""
    from journeys.items import read_items
    from journeys.store import catalogs

    if files:
        items: dict[tuple[str, str], dict[str, Any]] = {}
        for given in files:
            name, sep, file = given.partition("=")
            if not sep or not name or not file:
                raise UsageError(f"--catalog {given}: write NAME=FILE (products=products.csv)")
            try:
                for row in read_items(file, key):
                    if row.item is not None:
                        items[(name, str(row.item_id))] = row.item
            except (OSError, ValueError) as exc:
                raise UsageError(f"--catalog {given}: {exc}") from None
        return lambda keys: {k: items[k] for k in keys if k in items}
    settings = load_settings()
    if settings.database_url is None and not (settings.data_dir / "journeys.db").is_file():
        return lambda keys: {}
    from journeys.store.database import Store

    def from_store(keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        store = Store(settings.store_url)
        try:
            return catalogs.lookup(store, keys)
        finally:
            store.engine.dispose()
    return from_store


def journey_schema() -> dict[str, object]:
    """The JSON Schema of the journey format: what `schema` prints, and docs/reference/ holds."""
    schema = Journey.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Journey"
    return schema


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(journey_schema(), indent=2))
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    loaded = load_file(Path(args.file))
    if loaded.journey is None:
        raise UsageError("\n".join(str(p) for p in loaded.problems))
    print(to_mermaid(loaded.journey), end="")
    return 0
