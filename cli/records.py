"""The commands that read what happened: status, outbox, inbox, providers."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from journeys.events import tracking_id
from journeys.inputs import printable, shown
from journeys.settings import Settings, load_settings
from journeys.store import inbox
from journeys.store.database import Store

# Each command imports what only it uses when it runs: ``outbox`` and ``inbox`` read the store
# and need neither the Temporal client nor the providers (a second less a call).


async def status_command(args: argparse.Namespace, settings: Settings) -> int:
    from cli.events import check_user
    from cli.subscriptions import describe
    from connection import client_for
    from journeys.store import subscriptions
    from journeys.validation.catalog import catalog
    from operate.status import format_status, user_status

    check_user(args.user)
    found = catalog(args.journeys or settings.journeys_dir)  # none valid: the user's runs still show
    if warning := found.warning():
        print(warning, file=sys.stderr)
    store = Store(settings.store_url)
    client = await client_for(settings)
    rows = await user_status(client, found.journeys, args.user, settings.task_queue, store=store,
                             legacy_ids=settings.legacy_ids, catalog=found)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2, ensure_ascii=False))
    elif not rows:
        print(f"user {printable(args.user)} is in no journey")
    for row in [] if args.json else rows:
        print(format_status(row))
    if not args.json:  # (starter.py subscription USER --json has them as JSON)
        print(describe(args.user, await asyncio.to_thread(subscriptions.of_user, store, args.user)))
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


def cmd_providers(args: argparse.Namespace) -> int:
    """Which provider serves each channel, and which settings would bring its vendor in; a
    vendor setting that cannot work is said as the worker would say it (exit 2)."""
    from activities.providers.registry import build_providers, choices, close_providers

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
    messages = inbox.messages(Store(load_settings().store_url), args.user)
    if args.json:  # message_id: what the app reports opens and clicks with (Message Opened ...)
        print(json.dumps([{**m.model_dump(mode="json", exclude={"idempotency_key"}),
                           "message_id": tracking_id(m.idempotency_key)} for m in messages],
                         indent=2, ensure_ascii=False))
        return 0
    for m in messages:
        text = m.content.get("title") or m.content.get("body", "")
        print(shown(f"{m.created_at:%Y-%m-%d %H:%M:%S}  {m.journey_id}/{m.node_id} {m.channel:<10} {text}"))
    if not messages:
        print(f"the inbox of {args.user} is empty")
    return 0


