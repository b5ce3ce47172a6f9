"""``starter.py variants JOURNEY NODE``: a node's content variants side by side (sent, delivered,
opened, clicked, converted, the rate with its 95 % interval, the chance each is best); with
``--winner NAME`` everyone gets that variant from the next send on, ``--reset`` goes back to
the weights. Each change is kept (``journeys.store.variants``)."""

from __future__ import annotations

import argparse
import json

from cli.funnel import from_catalog
from journeys.funnel.variants import format_variants, variant_stats
from journeys.settings import load_settings
from journeys.store import variants
from journeys.store.database import Store


def cmd_variants(args: argparse.Namespace) -> int:
    settings = load_settings()
    journey = from_catalog(args.journey, args.journeys, settings)
    node = variants.node_with_variants(journey, args.node)
    store = Store(settings.store_url)
    try:
        if args.winner or args.reset:
            variants.set_winner(store, journey, node.id, None if args.reset else args.winner)
        stats = variant_stats(store, journey, node)
        changes = variants.history(store, journey.id, node.id)
    finally:
        store.engine.dispose()
    if args.json:
        print(json.dumps({**stats.model_dump(mode="json"), "changes": [
            {"winner": w, "at": at.isoformat()} for w, at in changes]}, indent=2))
        return 0
    print(f"journey {journey.id}, node {node.id}")
    print("\n".join(line.removeprefix("  ") for line in format_variants(stats)))
    for winner, at in changes:
        print(f"  {at:%Y-%m-%d %H:%M:%S} UTC  {f'winner {winner}' if winner else 'back to the weights'}")
    return 0
