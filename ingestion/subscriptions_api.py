"""``POST /v1/subscriptions``: an app or a preference centre subscribes or unsubscribes a user
(from a channel, or one topic of it). Behind the write key, as the tracking calls."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingestion.requests import Refused, authorize, check_sender, read_json
from journeys.language.models import Channel, Topic
from journeys.settings import Settings
from journeys.store import subscriptions
from journeys.store.database import Store


class SubscriptionItem(BaseModel):
    """One change: ``subscribed`` false unsubscribes the user from ``channel`` (or its ``topic``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    user_id: str = Field(alias="userId", min_length=1, max_length=200)
    channel: Channel
    topic: Topic | None = None
    subscribed: bool
    type: Literal["subscription"] | None = None


def add_routes(app: FastAPI, settings: Settings, store_of: Any) -> None:
    """The subscription route on ``app``; ``store_of(request)`` gives the app's store."""

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
        store: Store = store_of(request)
        source = f"api {request.client.host}" if request.client else "api"
        changed = await asyncio.to_thread(
            subscriptions.change, store, item.user_id, item.channel.value, topic=item.topic or "",
            subscribed=item.subscribed, how="api", source=source)
        return JSONResponse({"success": True, "changed": changed})


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "body"
    return f"{where}: {error.get('msg', 'invalid')}"
