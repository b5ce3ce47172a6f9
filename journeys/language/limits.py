"""The documented limits, enforced at the door: nothing over them is written or started.

Each limit keeps one user's data from stalling everyone: Temporal refuses a payload over 2 MB
(and gRPC a message over 4 MB), a workflow that cannot decode its input is stuck for good, and
a template is code a marketer wrote, run for every user.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from journeys.language.models import Channel

#: An event's properties, as compact JSON (Segment allows 32 KB an event).
MAX_EVENT_BYTES = 32 * 1024
#: A profile, as compact JSON, after a change is merged in.
MAX_PROFILE_BYTES = 64 * 1024
#: Nesting of objects and lists in event properties and profiles (``{"a": {"b": 1}}`` is 2).
MAX_DEPTH = 16
#: A journey file on disk, and the journey as the workflow input carries it (JSON).
MAX_JOURNEY_BYTES = 1024 * 1024
#: A rendered message, all fields together in UTF-8, per channel: over it the message fails.
MAX_MESSAGE_BYTES: dict[Channel, int] = {
    Channel.push: 4 * 1024,  # APNs and FCM refuse payloads over 4 KB
    Channel.web_push: 4 * 1024,
    Channel.sms: 1600,  # ten concatenated segments
    Channel.whatsapp: 4096,
    Channel.email: 512 * 1024,
    Channel.webhook: 256 * 1024,
    Channel.in_app: 16 * 1024,
    Channel.web_popup: 16 * 1024,
    Channel.app_inbox: 16 * 1024,
}
#: The longest string or list a template expression may build (``*``, ``%``, ``format``, ...).
MAX_TEMPLATE_VALUE = 256 * 1024
#: Wall-clock time one template may take to render.
MAX_RENDER_SECONDS = 1.0


class LimitExceeded(ValueError):
    """A value is over one of the limits above; the message says which and by how much."""


def depth(value: Any) -> int:
    """How deeply objects and lists nest in ``value`` (iteratively: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:  # no need to walk further
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def check_properties(value: Mapping[str, Any], what: str, max_bytes: int) -> None:
    """Refuse properties nested deeper than MAX_DEPTH, over ``max_bytes``, or not plain JSON."""
    if depth(value) > MAX_DEPTH:
        raise LimitExceeded(f"{what} nest deeper than {MAX_DEPTH} levels")
    try:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode())
    except ValueError as exc:  # NaN or Infinity
        raise LimitExceeded(f"{what}: {exc}") from None
    except TypeError as exc:
        raise LimitExceeded(f"{what}: not JSON: {exc}") from None
    if size > max_bytes:
        raise LimitExceeded(f"{what} are {size} bytes as JSON, over the limit of {max_bytes}")


def brief(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters: reasons that quote user data stay small."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
