"""Twilio's callbacks to ``serve``, refused unless Twilio signed them (``X-Twilio-Signature``:
HMAC-SHA1 of the URL Twilio called and the sorted form, under the account's auth token).

- ``POST /twilio/inbound`` (the number's "A message comes in" webhook): STOP and its synonyms
  unsubscribe the number's user from SMS (or WhatsApp), START and its synonyms subscribe them
  again. The user is the one last messaged at that number; an unknown number changes nothing,
  with the same answer. Twilio's own opt-out handling for the number goes on regardless.
- ``POST /twilio/status`` (each message's ``StatusCallback``, which the provider sets when
  ``JOURNEYS_PUBLIC_URL`` is not this machine): the outbox row moves from ``delivered`` (Twilio
  accepted it) to ``delivered_to_device``, ``undelivered`` or ``failed``, with the carrier's
  error code.

The URL signed is ``JOURNEYS_PUBLIC_URL`` and the path: set it to the address Twilio calls.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ingestion.subscriptions_api import RateLimit
from journeys.settings import Settings
from journeys.store import callbacks, subscriptions
from journeys.store.database import OutboxStatus

INBOUND_PATH, STATUS_PATH = "/twilio/inbound", "/twilio/status"
MAX_CALLBACK_BODY = 64 * 1024
#: Twilio's opt-out and opt-in keywords (its Advanced Opt-Out defaults), the whole message.
STOP_WORDS = frozenset({"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT",
                        "OPTOUT", "OPT OUT", "REVOKE"})
START_WORDS = frozenset({"START", "YES", "UNSTOP", "SUBSCRIBE"})
#: A message's later fate, as Twilio's MessageStatus says it.
LATER: dict[str, OutboxStatus] = {"delivered": "delivered_to_device", "undelivered": "undelivered",
                                  "failed": "failed"}
CALLBACKS_PER_MINUTE = 600
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

log = logging.getLogger("journeys.http")


def signature(auth_token: str, url: str, form: list[tuple[str, str]]) -> str:
    """Twilio's signature of a POST to ``url`` with ``form``."""
    signed = url + "".join(key + value for key, value in sorted(form))
    return base64.b64encode(hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def add_routes(app: FastAPI, settings: Settings, parts_of: Any) -> None:
    """The Twilio callback routes on ``app``; ``parts_of(request).store`` is the store."""
    limit = RateLimit(CALLBACKS_PER_MINUTE)

    async def signed_form(request: Request) -> dict[str, str] | Response:
        if not limit.allows(request.client.host if request.client else "-"):
            return Response(status_code=429, headers={"Retry-After": "60"})
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_CALLBACK_BODY:
                return Response(status_code=413)
        try:
            form = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            form = []
        token = settings.twilio_auth_token
        given = request.headers.get("x-twilio-signature", "")
        url = settings.public_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if not token or not hmac.compare_digest(signature(token, url, form).encode(), given.encode()):
            return Response(status_code=403)  # not Twilio's (or Twilio is not set up here)
        return dict(form)

    @app.post(INBOUND_PATH, include_in_schema=False)
    async def inbound(request: Request) -> Response:
        form = await signed_form(request)
        if isinstance(form, Response):
            return form
        words = " ".join(form.get("Body", "").split()).upper()
        sender = form.get("From", "")
        channel = "whatsapp" if sender.startswith("whatsapp:") else "sms"
        subscribed = True if words in START_WORDS else False if words in STOP_WORDS else None
        if subscribed is not None:
            store = parts_of(request).store
            user = await asyncio.to_thread(callbacks.user_of_address, store, sender.removeprefix("whatsapp:"))
            if user is None:
                log.info("an opt-out or opt-in from a number no message went to")
            else:
                await asyncio.to_thread(subscriptions.change, store, user, channel, subscribed=subscribed,
                                        how="sms", source=f"twilio {words.lower()}")
        return Response(TWIML, media_type="text/xml")

    @app.post(STATUS_PATH, include_in_schema=False)
    async def status(request: Request) -> Response:
        form = await signed_form(request)
        if isinstance(form, Response):
            return form
        later, sid = LATER.get(form.get("MessageStatus", "")), form.get("MessageSid", "")
        if later and sid:
            code = form.get("ErrorCode")
            failed = code and later != "delivered_to_device"
            reason = f"not delivered: carrier error {code}" if failed else None
            await asyncio.to_thread(callbacks.settle_later, parts_of(request).store, sid, later, reason)
        return Response(status_code=204)
