"""``starter.py catalog``: catalogs of items (products, stores, offers) that templates read with
``catalog('products', id)``. ``import`` upserts a file's items, ``list`` and ``show`` read them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from journeys.inputs import printable
from journeys.items import read_items
from journeys.language.loader import catalogs_of, load_catalog
from journeys.language.problems import UsageError
from journeys.settings import load_settings
from journeys.store import catalogs
from journeys.store.database import Store

#: Refused rows printed one by one; past that, only their count.
SHOWN_REFUSED = 20


def declared_types(folder: str | None) -> dict[str, dict[str, str]]:
    """The field types the journey folder's catalog file declares, per catalog."""
    path = Path(folder or load_settings().journeys_dir)
    if not path.is_dir():
        return {}
    schemas, _ = load_catalog(path)
    return {name: dict(schema.fields) for name, schema in catalogs_of(schemas).items()}


def import_items(store: Store, name: str, file: str, key: str,
                 types: dict[str, str]) -> catalogs.Written:
    """Upsert ``file``'s items into catalog ``name``: what was added, changed, refused and why."""
    try:
        catalogs.check_name(name)
        rows = list(read_items(file, key, types))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{file}: {exc}") from None
    written, items = catalogs.Written(), dict[str, dict[str, Any]]()
    for row in rows:
        if row.refused is not None:
            written.refused.append(f"{row.where}: {row.refused}")
            continue
        try:
            item_id, item = catalogs.check_item(row.item_id, row.item)
        except catalogs.ItemRefused as exc:
            written.refused.append(f"{row.where}: {exc}")
            continue
        if item_id in items:
            written.refused.append(f"{row.where}: id '{printable(item_id)}' again (the last one is kept)")
        items[item_id] = item
    return written.plus(catalogs.put(store, name, items))


def cmd_catalog(args: argparse.Namespace) -> int:
    store = Store(load_settings().store_url)
    try:
        if args.action == "import":
            if not args.name or not args.file:
                raise UsageError("catalog import NAME FILE --key FIELD")
            written = import_items(store, args.name, args.file, args.key,
                                   declared_types(args.journeys).get(args.name, {}))
            return _written(args, written)
        if args.action == "list":
            listed = catalogs.catalogs(store)
            if args.json:
                print(json.dumps([{"catalog": c.catalog, "items": c.items,
                                   "updated_at": c.updated_at.isoformat()} for c in listed], indent=2))
            for c in [] if args.json else listed:
                print(f"{c.catalog:<30} {c.items:>9,} item(s), changed {c.updated_at:%Y-%m-%d %H:%M:%S} UTC")
            if not listed and not args.json:
                print("no catalogs yet: starter.py catalog import NAME FILE --key FIELD")
            return 0
        if not args.name:
            raise UsageError("catalog show NAME [ID]")
        return _show(store, args)
    finally:
        store.engine.dispose()


def _written(args: argparse.Namespace, written: catalogs.Written) -> int:
    if args.json:
        print(json.dumps({"catalog": args.name, "added": written.added, "changed": written.changed,
                          "unchanged": written.unchanged, "refused": written.refused}, indent=2))
    else:
        print(f"{args.name}: {written.added} added, {written.changed} changed, "
              f"{written.unchanged} unchanged, {len(written.refused)} refused")
        for line in written.refused[:SHOWN_REFUSED]:
            print(f"  refused {printable(line)}")
        if len(written.refused) > SHOWN_REFUSED:
            print(f"  ... and {len(written.refused) - SHOWN_REFUSED} more refused")
    return 1 if written.refused else 0


def _show(store: Store, args: argparse.Namespace) -> int:
    if args.file:  # catalog show NAME ID: one item
        found = catalogs.lookup(store, [(args.name, args.file)]).get((args.name, args.file))
        if found is None:
            raise UsageError(f"catalog '{printable(args.name)}' has no item '{printable(args.file)}'")
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return 0
    page = catalogs.items(store, args.name, after=args.after, limit=args.limit)
    if args.json:
        print(json.dumps([{"id": i, "item": item, "updated_at": at.isoformat()} for i, item, at in page],
                         indent=2, ensure_ascii=False))
        return 0
    for item_id, item, _ in page:
        print(f"{printable(item_id)}  {printable(json.dumps(item, ensure_ascii=False))[:160]}")
    if len(page) == args.limit:
        print(f"(more: --after {printable(page[-1][0])})")
    elif not page:
        print(f"catalog '{printable(args.name)}' has no items{' after that' if args.after else ''}")
    return 0
