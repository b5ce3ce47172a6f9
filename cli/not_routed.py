"""What ``starter.py event`` and ``ingest`` say when an event is not routed (exit status 1)."""

from __future__ import annotations

import asyncio
import sys

from temporalio.client import Client

from connection import address_of, client_for
from journeys.events import Event, Routed
from journeys.inputs import shown
from journeys.language.problems import UsageError
from journeys.settings import Settings


async def reach(settings: Settings, what: str) -> Client | None:
    """A client within the routing deadline (a hung server answers nothing); None, with what
    was not routed said on stderr, if Temporal cannot be reached."""
    try:
        async with asyncio.timeout(settings.route_timeout):
            return await client_for(settings)
    except TimeoutError:
        why = f"Temporal at {address_of(settings)} did not answer within " \
              f"{settings.route_timeout:g} s (JOURNEYS_ROUTE_TIMEOUT)"
    except UsageError as exc:  # unreachable: not routed (1); a namespace that is not there: usage (2)
        if not str(exc).startswith("cannot reach Temporal"):
            raise
        why = str(exc)
    print(shown(f"not routed: {what}: {why}"), file=sys.stderr)
    return None


def say_not_routed(event: Event, routed: list[Routed] | None, error: Exception | None = None) -> int:
    """Name, on stderr, each journey ``event`` was not routed to (or why it reached none): the
    command's exit status, 1 if there was one."""
    lines = [f" to {r.journey_id}: {r.error}" for r in routed or [] if r.action == "failed"]
    if error is not None:
        lines.append(": " + (str(error).splitlines()[0] if str(error) else type(error).__name__))
    for line in lines:
        print(shown(f"not routed: event {event.id} of {event.user_id}{line}"), file=sys.stderr)
    return 1 if lines else 0
