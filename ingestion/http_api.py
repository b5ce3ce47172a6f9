"""Segment's HTTP tracking API in front of the router: apps and Segment's own libraries send
events and profile updates over HTTP, and they start, wake or end journeys as ``starter.py
event`` does.

    POST /v1/track     {"userId", "event", "properties", "messageId", "timestamp"}
    POST /v1/identify  {"userId", "traits"}: a profile update (may start profile-date journeys)
    POST /v1/batch     {"batch": [{"type": "track", ...}, {"type": "identify", ...}]}
    GET  /health

Auth as Segment's: HTTP basic, the write key (``JOURNEYS_WRITE_KEY``) as the user name and an
empty password. Answers: 200 ``{"success": true}``; 400 ``{"success": false, "errors": [{"index",
"reason"}]}`` naming each bad item (the good items of the request are routed all the same); 401
without the right key; 403 for a browser's cross-site request to a key-less API; 408 for a body
slower than ``JOURNEYS_HTTP_BODY_SECONDS``; 413 for a body over 500 KB (sent or inflated); 415
for a body that is not ``application/json`` or not gzip or plain (see ingestion/requests.py).
``messageId`` is the event id, so an item
sent twice (a client's retry) enters nobody twice; an item without one gets an id from its
content, as a line of ``starter.py ingest`` does.

It runs in ``starter.py serve`` and ``make run``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from temporalio.client import Client

from ingestion.pipeline import Ingestion
from ingestion.requests import MAX_BODY_BYTES as MAX_BODY_BYTES  # the documented limit, here too
from ingestion.requests import Refused, authorize, check_sender, read_json
from ingestion.router import Router
from journeys.ingest import BadLine, id_text, parse_identify, parse_item
from journeys.limits import LimitExceeded, brief
from journeys.problems import UsageError
from journeys.settings import Settings
from journeys.store import Store
from service.runtime import connect_settings

#: The hosts the API may serve without a write key: this machine only.
LOOPBACK = ("127.0.0.1", "::1", "localhost")
#: Items routed at once (different users; each user's in order), as ``ingest --concurrency``.
ROUTING_CONCURRENCY = 64

log = logging.getLogger("journeys.http")


def check_bind(host: str, write_key: str | None) -> None:
    """Without a write key anyone who reaches the API can send events: loopback only."""
    if not write_key and host not in LOOPBACK:
        raise UsageError(f"--host {host}: set JOURNEYS_WRITE_KEY to serve the API beyond this "
                         f"machine (without it, only {', '.join(LOOPBACK)})")


# --- the documented bodies (the handlers read the JSON themselves: bad items are 400s) -----

class TrackItem(BaseModel):
    """An event of a user (Segment's track call); ``context`` and the rest are ignored."""

    userId: str = Field(description="The user's id.")
    event: str = Field(description="The event's name, as journeys name it (exact match).")
    properties: dict[str, Any] = Field(default_factory=dict)
    messageId: str | None = Field(default=None, description="The event id: counted once per "
                                  "user and journey. Default: an id made from the content.")
    timestamp: str | None = Field(default=None, description="ISO 8601; default: now.")


class IdentifyItem(BaseModel):
    """Profile properties of a user (Segment's identify call), merged into the profile."""

    userId: str
    traits: dict[str, Any] = Field(default_factory=dict)


def _body(*schemas: dict[str, Any], batch: bool = False) -> dict[str, Any]:
    one = schemas[0] if len(schemas) == 1 else {"oneOf": list(schemas)}
    schema = {"type": "object", "required": ["batch"],
              "properties": {"batch": {"type": "array", "items": one}}} if batch else one
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _typed(model: type[BaseModel], kind: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["properties"] = {"type": {"const": kind}, **schema["properties"]}
    schema["required"] = ["type", *schema.get("required", [])]
    return schema


# --- the app ---------------------------------------------------------------------------------

@dataclass
class _Parts:
    client: Client
    store: Store
    ingestion: Ingestion


def create_app(settings: Settings, journeys_dir: str | Path | None = None,
               connect_client: Callable[[], Awaitable[Client]] | None = None) -> FastAPI:
    """The API for ``settings``: journeys from ``journeys_dir`` (default ``JOURNEYS_DIR``), a
    Temporal client from ``connect_client`` (default: ``TEMPORAL_ADDRESS``), both got once, in
    the app's lifespan, with the store."""
    folder = journeys_dir or settings.journeys_dir

    async def default_client() -> Client:
        return await connect_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = await (connect_client or default_client)()
        store = Store(settings.store_url)
        router = Router(client, settings.task_queue, receipts=store, legacy_ids=settings.legacy_ids,
                        send_timeout=settings.send_timeout)
        ingestion = Ingestion(router, store, folder)
        await asyncio.to_thread(ingestion.index)  # validated once, now; again when a file changes
        app.state.parts = _Parts(client, store, ingestion)
        try:
            yield
        finally:
            store.engine.dispose()

    gate = asyncio.Semaphore(ROUTING_CONCURRENCY)  # items routed at once, over all requests
    app = FastAPI(title="Journeys tracking API", lifespan=lifespan,
                  description="Segment's HTTP tracking API: events and profile updates start, "
                              "wake or end journeys. HTTP basic auth: the write key as user name.")

    async def handle(request: Request, items: Callable[[Any], list[tuple[str, Any]]]) -> JSONResponse:
        try:
            authorize(request, settings.write_key)
            check_sender(request, settings.write_key)
            work = items(await read_json(request, settings.http_body_seconds))
        except Refused as exc:
            return _answer(exc.status, [{"reason": exc.reason}])
        parts: _Parts = request.app.state.parts
        errors: list[dict[str, Any]] = []

        async def in_order(items: list[tuple[int, str, Any]]) -> None:
            for index, kind, raw in items:  # one user's items, in the order sent
                async with gate:
                    reason = await _route(parts.ingestion, kind, raw, index)
                if reason:
                    errors.append({"index": index, "reason": reason})

        by_user: dict[str, list[tuple[int, str, Any]]] = {}
        for index, (kind, raw) in enumerate(work):
            by_user.setdefault(_user_of(raw, index), []).append((index, kind, raw))
        await asyncio.gather(*(in_order(items) for items in by_user.values()))
        errors.sort(key=lambda error: error["index"])
        return _answer(400 if errors else 200, errors)

    @app.post("/v1/track", openapi_extra=_body(TrackItem.model_json_schema()),
              summary="An event of a user")
    async def track(request: Request) -> JSONResponse:
        return await handle(request, lambda body: [("track", body)])

    @app.post("/v1/identify", openapi_extra=_body(IdentifyItem.model_json_schema()),
              summary="Profile properties of a user")
    async def identify(request: Request) -> JSONResponse:
        return await handle(request, lambda body: [("identify", body)])

    @app.post("/v1/batch", summary="Track and identify calls, in order",
              openapi_extra=_body(_typed(TrackItem, "track"), _typed(IdentifyItem, "identify"),
                                  batch=True))
    async def batch(request: Request) -> JSONResponse:
        return await handle(request, _batch_items)

    @app.get("/health", summary="The API answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _answer(status: int, errors: list[dict[str, Any]]) -> JSONResponse:
    body: dict[str, Any] = {"success": not errors}
    if errors:
        body["errors"] = errors
    headers = {"WWW-Authenticate": 'Basic realm="journeys"'} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _batch_items(body: dict[str, Any]) -> list[tuple[str, Any]]:
    items = body.get("batch")
    if not isinstance(items, list):
        raise Refused(400, "batch: not a JSON list")
    return [(item.get("type", "") if isinstance(item, dict) else "", item) for item in items]


async def _route(ingestion: Ingestion, kind: str, raw: Any, index: int) -> str | None:
    """Route one item; why it was refused or failed, or None."""
    if not isinstance(raw, dict):
        return "not a JSON object"
    try:
        if kind == "track":
            line = parse_item(raw, index)
            routed = await ingestion.track(line.event, line.profile)
        elif kind == "identify":
            routed = await ingestion.identify(*parse_identify(raw, index))
        else:
            return f"type: {kind!r} is not one of 'track', 'identify'"
    except BadLine as exc:
        return exc.reason
    except LimitExceeded as exc:
        return brief(str(exc))
    failed = [f"{r.journey_id}: {r.error}" for r in routed if r.action == "failed"]
    return "; ".join(failed) or None


def _user_of(raw: Any, index: int) -> str:
    """Whose item this is, to keep each user's items in order; an item without a user is alone."""
    user = raw.get("userId", raw.get("user_id")) if isinstance(raw, dict) else None
    try:  # as the item will be read: 2 and 2.0 are one user
        return f"user:{id_text(user, 'userId')}" if user is not None else f"item:{index}"
    except LimitExceeded:
        return f"item:{index}"
