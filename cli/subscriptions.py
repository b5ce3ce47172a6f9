"""``starter.py subscription``: a user's subscriptions, and changing them by hand."""

from __future__ import annotations

import argparse
import getpass
import json
import re
import socket

from journeys.events import check_name
from journeys.inputs import printable
from journeys.language.limits import LimitExceeded
from journeys.language.models import TOPIC_PATTERN, Channel
from journeys.language.problems import UsageError
from journeys.settings import load_settings
from journeys.store import subscriptions
from journeys.store.database import Store


def cmd_subscription(args: argparse.Namespace) -> int:
    """Show the user's subscriptions; with --subscribe or --unsubscribe, change them first (the
    channel given, else every channel; the topic given, else the channel as a whole)."""
    try:
        check_name(args.user, "user id")
    except LimitExceeded as exc:
        raise UsageError(str(exc)) from None
    if args.channel is not None and args.channel not in Channel.__members__:
        raise UsageError(f"--channel: '{printable(args.channel)}' is not a channel "
                         f"(channels: {', '.join(Channel)})")
    topic = args.topic or ""
    if topic and (len(topic) > 100 or not re.fullmatch(TOPIC_PATTERN, topic)):
        raise UsageError(f"--topic: '{printable(topic)}' is not a topic name (lower-case letters, "
                         "digits, '_', '.', '-'; at most 100)")
    store = Store(load_settings().store_url)
    try:
        if args.subscribe or args.unsubscribe:
            channels = [args.channel] if args.channel else [c.value for c in Channel]
            source = f"{getpass.getuser()}@{socket.gethostname()}"
            for channel in channels:
                subscriptions.change(store, args.user, channel, topic=topic, subscribed=args.subscribe,
                                     how="cli", source=source)
        found = subscriptions.of_user(store, args.user)
        history = subscriptions.changes(store, args.user)
    finally:
        store.engine.dispose()
    if args.json:
        print(json.dumps({"user_id": args.user,
                          "subscriptions": [s.model_dump(mode="json") for s in found],
                          "changes": [c.model_dump(mode="json") for c in history]},
                         indent=2, ensure_ascii=False))
        return 0
    print(describe(args.user, found))
    for c in history:
        print(f"  {c.at:%Y-%m-%d %H:%M:%S}  {'subscribed' if c.subscribed else 'unsubscribed':<12} "
              f"{_what(c.channel, c.topic):<24} by {c.how}{f' ({printable(c.source)})' if c.source else ''}")
    return 0


def describe(user_id: str, found: list[subscriptions.Subscription]) -> str:
    """One line: what the user is unsubscribed from (everything else: subscribed)."""
    off = [_what(s.channel, s.topic) for s in found if not s.subscribed]
    if not off:
        return f"user {printable(user_id)}: subscribed to every channel and topic"
    return f"user {printable(user_id)}: unsubscribed from {', '.join(off)}; subscribed to the rest"


def _what(channel: str, topic: str) -> str:
    return f"{channel} topic '{printable(topic)}'" if topic else channel
