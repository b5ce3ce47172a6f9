"""Subscriptions over HTTP.

- ``POST /v1/subscriptions``: an app or a preference centre subscribes or unsubscribes a user
  (from a channel, or one topic of it), behind the write key as the tracking calls.
- ``GET`` and ``POST /u/{token}``: the one-click unsubscribe link of a marketing email
  (journeys.links), with no key: the token is the capability. A GET shows a page with a button
  and changes nothing (mail scanners follow links); a POST unsubscribes at once (RFC 8058's
  ``List-Unsubscribe=One-Click``, or the page's button). A forged, altered or unknown token
  is 404, the same page whatever is wrong with it; the body is bounded, each client address
  is rate limited, and nothing of the user is shown, logged or put in the URL.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections import OrderedDict, deque
from typing import Any, Literal, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingestion.requests import Refused, authorize, check_sender, read_json
from journeys.language.models import Channel, Topic
from journeys.links import UNSUBSCRIBE_PATH, Links, Message
from journeys.settings import Settings
from journeys.store import engagements, subscriptions
from journeys.store.database import Store

#: The one-click POST's body (RFC 8058); a larger body is no unsubscribe of ours.
ONE_CLICK = b"List-Unsubscribe=One-Click"
MAX_LINK_BODY = 1024
#: Requests to the link endpoints per client address and minute, and addresses remembered.
LINK_REQUESTS_PER_MINUTE = 30
REMEMBERED_ADDRESSES = 10_000


class Parts(Protocol):
    store: Store
    links: Links


class SubscriptionItem(BaseModel):
    """One change: ``subscribed`` false unsubscribes the user from ``channel`` (or its ``topic``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    user_id: str = Field(alias="userId", min_length=1, max_length=200)
    channel: Channel
    topic: Topic | None = None
    subscribed: bool
    type: Literal["subscription"] | None = None


class RateLimit:
    """At most ``per_minute`` requests from one address in any minute (in this process)."""

    def __init__(self, per_minute: int, remembered: int = REMEMBERED_ADDRESSES) -> None:
        self.per_minute, self.remembered = per_minute, remembered
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def allows(self, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        times = self._seen.pop(address, None) or deque()
        while times and times[0] <= now - 60:
            times.popleft()
        allowed = len(times) < self.per_minute
        if allowed:
            times.append(now)
        self._seen[address] = times  # the newest last: the oldest address goes first
        while len(self._seen) > self.remembered:
            self._seen.popitem(last=False)
        return allowed


def add_routes(app: FastAPI, settings: Settings, parts_of: Any) -> None:
    """The subscription routes on ``app``; ``parts_of(request)`` gives the app's store and links."""
    limit = RateLimit(LINK_REQUESTS_PER_MINUTE)

    @app.post("/v1/subscriptions", summary="Subscribe or unsubscribe a user (a channel, or a topic)",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": SubscriptionItem.model_json_schema(by_alias=True)}}}})
    async def subscription(request: Request) -> JSONResponse:
        try:
            authorize(request, settings.write_key)
            check_sender(request, settings.write_key)
            body = await read_json(request, settings.http_body_seconds)
            try:
                item = SubscriptionItem.model_validate(body)
            except ValidationError as exc:
                raise Refused(400, "; ".join(_problem(e) for e in exc.errors())) from None
        except Refused as exc:
            headers = {"WWW-Authenticate": 'Basic realm="journeys"'} if exc.status == 401 else None
            return JSONResponse({"success": False, "errors": [{"reason": exc.reason}]},
                                status_code=exc.status, headers=headers)
        parts: Parts = parts_of(request)
        source = f"api {request.client.host}" if request.client else "api"
        changed = await asyncio.to_thread(
            subscriptions.change, parts.store, item.user_id, item.channel.value, topic=item.topic or "",
            subscribed=item.subscribed, how="api", source=source)
        return JSONResponse({"success": True, "changed": changed})

    def checked(request: Request, token: str) -> Message | HTMLResponse:
        if not limit.allows(request.client.host if request.client else "-"):
            return page(429, "Too many requests", "Try again in a minute.", {"Retry-After": "60"})
        found = parts_of(request).links.read_unsubscribe(token)
        return found or page(404, "This link is not valid", "Nothing was changed.")

    @app.get(UNSUBSCRIBE_PATH + "{token}", include_in_schema=False)
    async def unsubscribepage(request: Request, token: str) -> HTMLResponse:
        found = checked(request, token)
        if isinstance(found, HTMLResponse):
            return found
        return page(200, f"Unsubscribe from {_what(found)}?",
                     '<form method="post"><button type="submit" name="confirm" value="yes">'
                     'Unsubscribe</button></form>', raw=True)

    @app.post(UNSUBSCRIBE_PATH + "{token}", include_in_schema=False)
    async def unsubscribe(request: Request, token: str) -> HTMLResponse:
        found = checked(request, token)
        if isinstance(found, HTMLResponse):
            return found
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LINK_BODY:
                return page(413, "Too large", "Nothing was changed.")
        source = "one-click" if body.strip() == ONE_CLICK else "page"
        store = parts_of(request).store
        await asyncio.to_thread(subscriptions.change, store, found.user_id, found.channel,
                                topic=found.topic, subscribed=False, how="link", source=source)
        if found.message:  # the link of a message: counted for its node
            await asyncio.to_thread(
                engagements.record, store, found.message, "unsubscribed", journey_id=found.journey_id,
                node_id=found.node_id, user_id=found.user_id, channel=found.channel)
        return page(200, f"You are unsubscribed from {_what(found)}", "")


def _what(found: Message) -> str:
    return f"{found.channel} messages on {found.topic}" if found.topic else f"{found.channel} messages"


def page(status: int, title: str, text: str, headers: dict[str, str] | None = None,
          raw: bool = False) -> HTMLResponse:
    body = text if raw else f"<p>{html.escape(text)}</p>"
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><meta name='robots' content='noindex'>"
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>{body}"
        "</body></html>", status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "body"
    return f"{where}: {error.get('msg', 'invalid')}"
