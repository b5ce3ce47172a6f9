"""Webhooks: the rendered request, sent as is, signed with JOURNEYS_WEBHOOK_SECRET.

The receiver checks ``X-Journeys-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>">`` (and may refuse an old ``t``), and drops a repeated ``Idempotency-Key``: a
retry after a lost answer carries the key of the first attempt. Without a secret nothing is
sent: an unsigned webhook could be forged by anyone who learns the URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlsplit

from activities.providers import (
    Outcome,
    OutgoingMessage,
    ProfileEditor,
    TransientError,
    delivered,
    failed,
    unreachable,
)
from activities.providers.egress import Egress
from activities.providers.http import Clients, Refused, attempt, request
from activities.providers.ledger import current
from journeys.egress import Refused as EgressRefused
from journeys.language.models import Channel
from journeys.settings import Settings

#: Response headers that may carry the receiver's id for the message, in order of preference.
ID_HEADERS = ("X-Request-Id", "X-Message-Id")
#: Headers httpx derives from the request itself: a template must not contradict them.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "host"})
#: Ours: a template cannot set or forge them.
_OURS = frozenset({"idempotency-key", "x-journeys-signature"})


def missing(settings: Settings, channel: Channel) -> list[str]:
    return [] if settings.webhook_secret else ["JOURNEYS_WEBHOOK_SECRET"]


def build(settings: Settings, profiles: ProfileEditor, channel: Channel) -> WebhookProvider:
    if not settings.webhook_secret:
        raise ValueError("JOURNEYS_WEBHOOK_SECRET is not set")
    return WebhookProvider(settings.webhook_secret, settings.send_timeout,
                           egress=Egress.from_settings(settings))


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Journeys-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _is_json(body: str) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


class WebhookProvider:
    """One HTTP request per message, signed; redirects are not followed."""

    name = "webhook"

    def __init__(self, secret: str, timeout: float, *, egress: Egress) -> None:
        self.secret = secret
        self.timeout = timeout
        self.egress = egress  # the url comes from a template: checked, connected to as checked
        self.clients = Clients(timeout, egress=egress)

    async def aclose(self) -> None:
        """Close this event loop's connections (at shutdown, or a test's end)."""
        await self.clients.aclose()

    def _request(self, message: OutgoingMessage) -> tuple[str, str, dict[str, str], bytes]:
        content = message.content
        url = content.get("url", "").strip()
        method = (content.get("method") or "POST").strip().upper()
        body = content.get("body", "").encode()
        headers = {name.removeprefix("headers."): value for name, value in content.items()
                   if name.startswith("headers.")}
        headers = {name: value for name, value in headers.items()
                   if name.lower() not in _FRAMING | _OURS}
        named = {name.lower() for name in headers}
        if body and "content-type" not in named and _is_json(content["body"]):
            headers["Content-Type"] = "application/json"
        headers["Idempotency-Key"] = message.idempotency_key
        headers["X-Journeys-Signature"] = signature(self.secret, body, int(time.time()))
        return method, url, headers, body

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        method, url, headers, body = self._request(message)
        if not url:
            return unreachable("the webhook has no url")
        # Not the URL nor its host (a template may put a user's data in either; a Slack-style
        # URL is a secret): the method only, and the host in the debug log.
        where = f"webhook {method}"
        ledger, address = current(), f"{method} {url}"
        settled = ledger.settled(address)  # an earlier attempt's answer, or too many unanswered
        if settled is not None:
            return settled
        try:
            self.egress.check_url(url)  # scheme, user:password, a refused literal address
            async with attempt(self.timeout, where):
                reply = await request(self.clients, method, url, headers=headers, content=body,
                                      what=where, on_sent=ledger.on_sent(address))
        except EgressRefused as exc:  # no retry makes the address acceptable
            return failed(str(exc), detail=_host(url))
        except Refused as exc:
            ledger.answered(address, "failed")
            return failed(str(exc), detail=exc.detail)
        if reply.verdict == "delivered":
            found = next((reply.headers[h] for h in ID_HEADERS if h in reply.headers), None)
            ledger.answered(address, "delivered", found[:200] if found else None)
            return delivered(found[:200] if found else None)
        # The receiver's words (it may echo the body: an email, the message) go to the debug log.
        if reply.verdict == "transient":
            ledger.answered(address, "answered")
            raise TransientError(f"webhook answered {reply.status}{reply.retry_after()}",
                                 detail=reply.text(), retry_after=reply.retry_delay())
        if reply.status == 410:  # Gone: the receiver says this address will never take messages
            ledger.answered(address, "unreachable")
            return unreachable("webhook answered 410 Gone", detail=reply.text())
        ledger.answered(address, "failed")
        return failed(f"webhook answered {reply.status}", detail=reply.text())


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "?")[:80]
    except ValueError:  # (request() says what is wrong with it)
        return "?"
