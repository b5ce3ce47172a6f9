"""Segment's HTTP tracking API in front of the router: apps and Segment's own libraries send
events and profile updates over HTTP, and they start, wake or end journeys as ``starter.py
event`` does.

    POST /v1/track     {"userId", "event", "properties", "messageId", "timestamp"}
    POST /v1/identify  {"userId", "traits"}: a profile update (may start profile-date journeys)
    POST /v1/batch     {"batch": [{"type": "track", ...}, {"type": "identify", ...}]}
    GET  /health (liveness), GET /ready (readiness: Temporal and the store answer)

Auth as Segment's: HTTP basic, the write key (``JOURNEYS_WRITE_KEY``) as the user name and an
empty password. Answers: 200 ``{"success": true}`` (page, screen, alias, group and
anonymousId-only items are listed as ``skipped``); 400 ``{"success": false, "errors": [{"index",
"reason"}]}`` naming each bad item (the good items of the request are routed all the same); 503
with ``Retry-After`` when an item could not be routed now (Temporal or the store unreachable,
slow or locked; within ``JOURNEYS_ROUTE_TIMEOUT``): send the request again; 401 without the
right key; 403 for a browser's cross-site request to a key-less API; 408 for a body slower than
``JOURNEYS_HTTP_BODY_SECONDS``; 413 for a body over 500 KB (sent or inflated); 415 for a body
that is not ``application/json`` or not gzip or plain (see ingestion/requests.py).
``messageId`` is the event id, so an item sent twice (a client's retry) enters nobody twice,
and it is answered 200 only once its first copy was routed; an item without one is a new event
(a fresh id), as Segment's libraries make each call.

It runs in ``starter.py serve`` and ``make run``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from temporalio.client import Client

from connection import connect_settings
from ingestion.catalogs_api import add_routes as add_catalog_routes
from ingestion.engagement_api import add_routes as add_engagement_routes
from ingestion.failures import problem_of
from ingestion.pipeline import Ingestion
from ingestion.readiness import readiness
from ingestion.requests import MAX_BODY_BYTES as MAX_BODY_BYTES  # the documented limit, here too
from ingestion.requests import Refused, authorize, check_sender, read_json
from ingestion.router import Router
from ingestion.subscriptions_api import add_routes as add_subscription_routes
from ingestion.twilio_api import add_routes as add_twilio_routes
from journeys.ingest import BadLine, id_text, parse_identify, parse_item, skip_reason
from journeys.language.limits import LimitExceeded, brief
from journeys.language.problems import UsageError
from journeys.links import Links, links_of
from journeys.settings import Settings
from journeys.store.database import Store

#: The hosts the API may serve without a write key: this machine only.
LOOPBACK = ("127.0.0.1", "::1", "localhost")
#: Items routed at once (different users; each user's in order), as ``ingest --concurrency``.
ROUTING_CONCURRENCY = 64
#: Segment calls no journey routes: accepted, and said to be skipped.
#: What a 503 asks the client to wait before it sends again; and /ready's wait for each part.
RETRY_AFTER_SECONDS = 5
READY_WAIT = 2.0
#: What an item came to: "routed", "skipped", or a failure (journeys.events.Problem), and why.
Outcome = tuple[str, str | None]
REASONS = {"unavailable": "not routed: the service is unavailable, send it again",
           "internal": "not routed: an internal error (logged), send it again later"}
NOT_ROUTED: Outcome = ("unavailable", REASONS["unavailable"])  # past the request's deadline

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
                                  "user and journey. Default: a new id (each call is an event).")
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
    links: Links  # the links in messages (unsubscribe), signed as the workers sign them


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
                        priority=settings.task_priority,
                        send_timeout=settings.send_timeout)
        ingestion = Ingestion(router, store, folder, deadline=settings.route_timeout,
                              behaviour_days=settings.behaviour_days)
        await asyncio.to_thread(ingestion.index)  # validated once, now; again when a file changes
        links = await asyncio.to_thread(links_of, store, settings.public_url, settings.link_secret)
        app.state.parts = _Parts(client, store, ingestion, links)
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
        outcomes: dict[int, Outcome] = {}

        async def in_order(items: list[tuple[int, str, Any]]) -> None:
            for index, kind, raw in items:  # one user's items, in the order sent
                async with gate:
                    outcomes[index] = await _route(parts.ingestion, kind, raw, index)

        by_user: dict[str, list[tuple[int, str, Any]]] = {}
        for index, (kind, raw) in enumerate(work):
            by_user.setdefault(_user_of(raw, index), []).append((index, kind, raw))
        try:  # the whole request within the deadline: a client waits for it, then sends it again
            async with asyncio.timeout(settings.route_timeout):
                await asyncio.gather(*(in_order(items) for items in by_user.values()))
        except TimeoutError:
            log.warning("request not routed within the deadline", extra={
                "items": len(work), "routed": len(outcomes), "deadline": settings.route_timeout})
        return _outcome(outcomes, len(work))

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

    add_subscription_routes(app, settings, lambda request: request.app.state.parts)
    add_engagement_routes(app, settings, lambda request: request.app.state.parts)
    add_catalog_routes(app, settings, lambda request: request.app.state.parts)
    add_twilio_routes(app, settings, lambda request: request.app.state.parts)

    @app.get("/health", summary="The API answers (liveness)")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Temporal and the store answer: events can be routed (readiness)")
    async def ready(request: Request) -> JSONResponse:
        parts: _Parts = request.app.state.parts
        checks = await readiness(parts.client, parts.store, READY_WAIT)
        if all(state == "ok" for state in checks.values()):
            return JSONResponse({"status": "ready", **checks})
        return JSONResponse({"status": "not ready", **checks}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    return app


def _answer(status: int, errors: list[dict[str, Any]],
            skipped: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"success": not errors}
    if errors:
        body["errors"] = errors
    if skipped:
        body["skipped"] = skipped
    headers = {"WWW-Authenticate": 'Basic realm="journeys"'} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return JSONResponse(body, status_code=status, headers=headers)


def _outcome(outcomes: dict[int, Outcome], count: int) -> JSONResponse:
    """One answer for the items: 503 if one may route on a retry (Segment's libraries send the
    batch again; what was routed is a duplicate then), 500 for an error of ours, 400 if one is
    wrong, 200 when every item was routed or skipped."""
    errors, skipped, kinds = [], [], set()
    for index in range(count):
        kind, reason = outcomes.get(index, NOT_ROUTED)
        if kind == "skipped":
            skipped.append({"index": index, "reason": reason})
        elif kind != "routed":
            kinds.add(kind)
            errors.append({"index": index, "reason": reason})
    status = next((code for kind, code in (("unavailable", 503), ("internal", 500), ("request", 400))
                   if kind in kinds), 200)
    return _answer(status, errors, skipped)


def _batch_items(body: dict[str, Any]) -> list[tuple[str, Any]]:
    items = body.get("batch")
    if not isinstance(items, list):
        raise Refused(400, "batch: not a JSON list")
    return [(item.get("type", "") if isinstance(item, dict) else "", item) for item in items]


async def _route(ingestion: Ingestion, kind: str, raw: Any, index: int) -> Outcome:
    """Route one item: what came of it, with a reason a client may read (what is wrong in the
    item, or that it may be sent again); journey ids and internal errors go to the log only."""
    if not isinstance(raw, dict):
        return "request", "not a JSON object"
    if (why := skip_reason({**raw, "type": kind})) is not None:
        return "skipped", why
    try:
        if kind == "track":
            if raw.get("messageId") is None and raw.get("id") is None:
                # As Segment's libraries do: a call is an event of its own (a file's line
                # without an id gets one from its content instead: see ingestion.files).
                raw = {**raw, "messageId": f"api-{uuid.uuid4()}"}
            line = parse_item(raw, index)
            routed = await ingestion.track(line.event, line.profile)
        elif kind == "identify":
            routed = await ingestion.identify(*parse_identify(raw, index))
        else:
            return "request", f"type: {kind!r} is not one of 'track', 'identify'"
    except BadLine as exc:
        return "request", exc.reason
    except LimitExceeded as exc:
        return "request", brief(str(exc))
    except Exception as exc:  # the store or Temporal down, locked or slow; the deadline
        problem = problem_of(exc)
        log.warning("item not routed", exc_info=problem == "internal",
                    extra={"index": index, "problem": problem, "error": brief(str(exc))})
        return problem, REASONS[problem]
    failed = [r for r in routed if r.action == "failed"]
    for problem in ("unavailable", "internal"):
        if any((r.problem or "internal") == problem for r in failed):
            return problem, REASONS[problem]
    if failed:  # the router's reasons for the event itself name what is wrong in it only
        return "request", "; ".join(dict.fromkeys(r.error or "not routed" for r in failed))
    return "routed", None


def _user_of(raw: Any, index: int) -> str:
    """Whose item this is, to keep each user's items in order; an item without a user is alone."""
    user = raw.get("userId", raw.get("user_id")) if isinstance(raw, dict) else None
    try:  # as the item will be read: 2 and 2.0 are one user
        return f"user:{id_text(user, 'userId')}" if user is not None else f"item:{index}"
    except LimitExceeded:
        return f"item:{index}"
