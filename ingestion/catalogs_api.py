"""Catalogs over HTTP, behind the write key as the tracking calls (journeys.store.catalogs):

- ``PUT /v1/catalogs/{name}/items/{id}``: the item (a JSON object) replaces the one of that id;
- ``PATCH /v1/catalogs/{name}/items``: ``{"items": [{"id": ..., fields...}]}``, at most
  :data:`MAX_BATCH`: each item's fields are set, its other fields kept (a new id is added);
- ``DELETE /v1/catalogs/{name}/items/{id}``.

A refused item is answered with why (the request's other items are written); a message sent
afterwards reads the items as they are then.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ingestion.requests import Refused, authorize, check_sender, read_json
from journeys.settings import Settings
from journeys.store import catalogs

#: Items a PATCH may hold.
MAX_BATCH = 1000


def _refused(exc: Refused) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="journeys"'} if exc.status == 401 else None
    return JSONResponse({"success": False, "errors": [{"reason": exc.reason}]},
                        status_code=exc.status, headers=headers)


def add_routes(app: FastAPI, settings: Settings, parts_of: Any) -> None:
    """The catalog routes on ``app``; ``parts_of(request).store`` is where items are kept."""

    async def body_of(request: Request, name: str) -> dict[str, Any]:
        authorize(request, settings.write_key)
        check_sender(request, settings.write_key)
        try:
            catalogs.check_name(name)
        except catalogs.ItemRefused as exc:
            raise Refused(404, str(exc)) from None
        return await read_json(request, settings.http_body_seconds)

    @app.put("/v1/catalogs/{name}/items/{item_id}", summary="Add or replace a catalog item")
    async def put_item(request: Request, name: str, item_id: str) -> JSONResponse:
        try:
            item = await body_of(request, name)
            try:
                key, item = catalogs.check_item(item_id, item)
            except catalogs.ItemRefused as exc:
                raise Refused(400, str(exc)) from None
        except Refused as exc:
            return _refused(exc)
        written = await asyncio.to_thread(catalogs.put, parts_of(request).store, name, {key: item})
        result = "added" if written.added else "changed" if written.changed else "unchanged"
        return JSONResponse({"success": True, "result": result})

    @app.patch("/v1/catalogs/{name}/items", summary="Add items, or change fields of items")
    async def patch_items(request: Request, name: str) -> JSONResponse:
        try:
            body = await body_of(request, name)
            given = body.get("items")
            if not isinstance(given, list) or not given or len(given) > MAX_BATCH:
                raise Refused(400, f"'items': a list of 1 to {MAX_BATCH} items, each with its 'id'")
        except Refused as exc:
            return _refused(exc)
        items: dict[str, dict[str, Any]] = {}
        refused: list[dict[str, Any]] = []
        for index, item in enumerate(given):
            try:
                key, checked = catalogs.check_item(item.get("id") if isinstance(item, dict) else None, item)
            except catalogs.ItemRefused as exc:
                refused.append({"index": index, "reason": str(exc)})
                continue
            items[key] = {**items.get(key, {}), **checked}  # one id twice: both sets of fields
        written = await asyncio.to_thread(catalogs.put, parts_of(request).store, name, items, merge=True)
        refused += [{"reason": why} for why in written.refused]
        return JSONResponse({"success": not refused,
                             "added": written.added, "changed": written.changed,
                             "unchanged": written.unchanged, "refused": refused},
                            status_code=200 if items else 400)

    @app.delete("/v1/catalogs/{name}/items/{item_id}", summary="Delete a catalog item")
    async def delete_item(request: Request, name: str, item_id: str) -> JSONResponse:
        try:  # no body, so no JSON to ask for: a browser sends no DELETE to another site unasked
            authorize(request, settings.write_key)  # (a CORS preflight, which this API never grants)
        except Refused as exc:
            return _refused(exc)
        gone = await asyncio.to_thread(catalogs.remove, parts_of(request).store, name, item_id)
        return JSONResponse({"success": gone, "deleted": gone}, status_code=200 if gone else 404)
