"""Tracked clicks and opens of email (journeys.links), answered by ``serve`` with no key.

- ``GET /c/{token}``: a click. 302 to the URL the message was rendered with, which the token
  binds (never to another: an altered token is 404); the click is counted.
- ``GET /o/{token}``: an open, through a 1x1 image. One in the first seconds after the message
  was made is a mail proxy's (kept as a machine's open).

The first click and the first open by a person of each message become events of the user,
``Message Clicked`` and ``Message Opened`` (``message_id``, ``journey_id``, ``node_id``,
``channel``), routed like any other: a journey may enter on them, wait for them, or count them
as goals. A failure to route them is logged; the user's redirect does not wait on it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ingestion.subscriptions_api import RateLimit, page
from journeys.events import Event
from journeys.links import CLICK_PATH, OPEN_PATH, Message, Purpose
from journeys.settings import Settings
from journeys.store import engagements

#: An open this soon after its message was made is a machine's (a proxy fetching images).
MACHINE_OPEN_SECONDS = 10.0
#: Clicks and opens per client address and minute (many users may share one address).
TRACKING_REQUESTS_PER_MINUTE = 300
PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
         b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

log = logging.getLogger("journeys.http")


def engagement_event(found: Message, kind: engagements.Kind) -> Event:
    """The user's event for their first ``kind`` of the message: one id per message and kind."""
    return Event(id=f"{kind}-{found.message}", name=engagements.EVENTS[kind], user_id=found.user_id,
                 properties={"message_id": found.message, "journey_id": found.journey_id,
                             "node_id": found.node_id, "channel": found.channel},
                 time=datetime.now(UTC))


def add_routes(app: FastAPI, settings: Settings, parts_of: Any) -> None:
    """The click and open routes on ``app``; ``parts_of(request)``: the store, links, ingestion."""
    limit = RateLimit(TRACKING_REQUESTS_PER_MINUTE)
    routing: set[asyncio.Task[None]] = set()

    async def route(parts: Any, event: Event) -> None:
        try:
            await asyncio.wait_for(parts.ingestion.track(event), settings.route_timeout)
        except Exception as exc:  # counted in the store already: said in the log
            log.warning("engagement event not routed",
                        extra={"event": event.name, "error": type(exc).__name__})

    async def engaged(request: Request, purpose: Purpose, token: str
                      ) -> tuple[Message, bool] | HTMLResponse:
        if not limit.allows(request.client.host if request.client else "-"):
            return page(429, "Too many requests", "Try again in a minute.", {"Retry-After": "60"})
        parts = parts_of(request)
        found = parts.links.read(purpose, token)
        if found is None or not found.message:
            return page(404, "This link is not valid", "Nothing was changed.")
        kind: engagements.Kind = "clicked" if purpose == "click" else "opened"
        machine = purpose == "open" and parts.links.age(token) < MACHINE_OPEN_SECONDS
        first = await asyncio.to_thread(
            engagements.record, parts.store, found.message, kind, journey_id=found.journey_id,
            node_id=found.node_id, user_id=found.user_id, channel=found.channel, machine=machine)
        if first:  # the journeys hear of a person's first one (in the background)
            task = asyncio.create_task(route(parts, engagement_event(found, kind)))
            routing.add(task)
            task.add_done_callback(routing.discard)
        return found, first

    @app.get(CLICK_PATH + "{token}", include_in_schema=False)
    async def click(request: Request, token: str) -> Response:
        found = await engaged(request, "click", token)
        if isinstance(found, HTMLResponse):
            return found
        return RedirectResponse(found[0].url, status_code=302, headers={"Cache-Control": "no-store"})

    @app.get(OPEN_PATH + "{token}", include_in_schema=False)
    async def open_(request: Request, token: str) -> Response:
        found = await engaged(request, "open", token)
        if isinstance(found, HTMLResponse):
            return found
        return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})
