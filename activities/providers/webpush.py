"""Web push: one encrypted push (RFC 8291, aes128gcm) per browser subscription, signed with VAPID
(RFC 8292), to each subscription's push service (RFC 8030).

pywebpush encrypts (``WebPusher.encode``) and py_vapid signs; the request itself goes out with
httpx's async client rather than pywebpush's ``requests`` call in a thread: the send stays
cancellable (an ``exit_when`` event cancels the activity, a thread would carry on and post
anyway), the timeout covers the whole request, and no worker thread waits on a slow push service.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid, Vapid01, VapidException
from pywebpush import WebPusher, WebPushException

from activities.providers import (
    Outcome,
    OutgoingMessage,
    ProfileEditor,
    TransientError,
    delivered,
    failed,
    unknown,
    unreachable,
)
from activities.providers.egress import Egress
from activities.providers.fcm import IN_FLIGHT, newest
from activities.providers.http import retry_after_seconds, tls_failure
from activities.providers.ledger import Ledger, current
from journeys.egress import Refused as EgressRefused
from journeys.events import tracking_id
from journeys.language.models import Channel
from journeys.settings import Settings

#: The profile property holding the user's subscriptions (``PushSubscription.toJSON()`` each).
SUBSCRIPTIONS = "web_push_subscriptions"
#: How long a push service keeps a message for a browser that is offline: a journey's message
#: a day late is stale, and TTL 0 (pywebpush's default) drops it unless the browser is online.
TTL_SECONDS = 24 * 3600
#: RFC 8030 asks push services to accept at least 4096 bytes of encrypted body; more may be refused.
MAX_BODY_BYTES = 4096
#: VAPID tokens may live up to 24 h (RFC 8292); half that leaves room for clock skew.
TOKEN_SECONDS = 12 * 3600

#: The share of JOURNEYS_SEND_TIMEOUT the pushes may take; the rest settles them (profile writes).
REQUEST_SHARE = 0.8
#: An answer is read to this many bytes, for the reason.
MAX_REPLY_BYTES = 4096

_GONE = frozenset({404, 410})
#: 408 Request Timeout, 425 Too Early and 429 Too Many Requests: a later attempt may pass.
_LATER = frozenset({408, 425, 429})

Verdict = Literal["accepted", "gone", "rejected", "transient", "unknown"]
#: An address's status in the ledger, for a verdict; and back.
_STATUS: dict[Verdict, str] = {"accepted": "delivered", "gone": "unreachable", "rejected": "failed"}
_EARLIER: dict[str, Verdict] = {"delivered": "accepted", "unreachable": "gone", "failed": "rejected",
                                "unknown": "unknown"}


@dataclass(frozen=True)
class _Push:
    """What became of one subscription's push (``answered``: the push service said so)."""

    verdict: Verdict
    detail: str  # a class and a status, for the reason (history keeps it)
    location: str | None = None
    words: str = ""  # the push service's origin and words, an error's text: debug log only
    answered: bool = True
    retry_after: float | None = None  # seconds a 429 or 503 asked us to wait


def missing(settings: Settings, channel: Channel) -> list[str]:
    """The settings web push still needs."""
    names = [("vapid_private_key", "JOURNEYS_VAPID_PRIVATE_KEY"), ("vapid_subject", "JOURNEYS_VAPID_SUBJECT")]
    return [env for field, env in names if not getattr(settings, field)]


def build(settings: Settings, profiles: ProfileEditor, channel: Channel) -> WebPushProvider:
    """The provider; a key or subject that cannot sign fails here, at worker start, not per message."""
    if not settings.vapid_private_key or not settings.vapid_subject:
        raise ValueError(f"web push needs {', '.join(missing(settings, channel))}")
    try:
        vapid = load_vapid(settings.vapid_private_key)
    except (ValueError, TypeError, VapidException) as exc:
        raise ValueError(f"JOURNEYS_VAPID_PRIVATE_KEY: not a P-256 private key "
                         f"(PEM, base64url DER or raw): {exc}") from None
    try:
        vapid.sign({"sub": settings.vapid_subject, "aud": "https://push.example"})
    except VapidException:
        raise ValueError("JOURNEYS_VAPID_SUBJECT: must be mailto:you@your.domain "
                         "or an https://host URL (no path)") from None
    # The pushes get 80 % of the send timeout: the send activity bounds the whole attempt by it,
    # and an attempt cut off after one browser accepted would be retried and push to it twice.
    return WebPushProvider(vapid, settings.vapid_subject, profiles,
                           timeout=settings.send_timeout * REQUEST_SHARE,
                           egress=Egress.from_settings(settings),
                           max_subscriptions=settings.push_max_tokens)


def load_vapid(key: str) -> Vapid01:
    """The VAPID signer for a PEM key (newlines may be written ``\\n``), base64url DER, or the raw
    32-byte key in base64url (what the ``web-push`` npm tool prints)."""
    text = key.strip().replace("\\n", "\n")
    if text.startswith("-----BEGIN"):
        vapid: Vapid01 = Vapid(serialization.load_pem_private_key(text.encode(), password=None))
    else:
        vapid = Vapid.from_string(text)
    private = vapid.private_key
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
        raise ValueError("the key is not on the P-256 curve")
    return vapid


def topic(idempotency_key: str) -> str:
    """RFC 8030 ``Topic`` (at most 32 base64url characters): a retry's push replaces the earlier one
    while the push service still holds it, so an offline browser gets it once."""
    digest = hashlib.sha256(idempotency_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


def payload(message: OutgoingMessage) -> bytes:
    """What the service worker receives: it shows title and body, opens url, and should use the
    idempotency key as the notification's ``tag`` so a repeated push replaces, not stacks; it
    reports a click with ``message_id`` (Message Clicked)."""
    content = message.content
    return json.dumps({"title": content.get("title", ""), "body": content.get("body", ""),
                       "url": content.get("url") or None,
                       "idempotency_key": message.idempotency_key,
                       "message_id": tracking_id(message.idempotency_key)},
                      ensure_ascii=False, separators=(",", ":")).encode()


class WebPushProvider:
    """Pushes to every subscription of the user at once; see :meth:`deliver` for the outcome."""

    name = "webpush"

    def __init__(self, vapid: Vapid01, subject: str, profiles: ProfileEditor, *, timeout: float,
                 egress: Egress, ttl: int = TTL_SECONDS, max_subscriptions: int = 20) -> None:
        self.egress = egress  # endpoints come from the user's browser: checked, connected to as checked
        self.max_subscriptions = max_subscriptions
        self.vapid = vapid
        self.subject = subject
        self.profiles = profiles
        self.timeout = timeout
        self.ttl = ttl

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        """Delivered if any subscription's push service accepted the push. Otherwise: a
        transient answer (429, 5xx, timeout, connection error) anywhere raises TransientError
        (the subscriptions found gone are removed by then, so the retry skips them); a refusal
        (400, 403, 413 ...) or a malformed subscription is ``failed``; none left is ``unreachable``.
        A partial success is not retried: that would push twice to the browsers that got it."""
        subscriptions = message.profile.get(SUBSCRIPTIONS) or []
        if not isinstance(subscriptions, list):
            return failed(f"{SUBSCRIPTIONS} is not a list")
        unique, _ = newest(list({_endpoint(s) or repr(s): s for s in subscriptions}.values()),
                           self.max_subscriptions)  # the newest JOURNEYS_PUSH_MAX_TOKENS
        if not unique:
            return unreachable(f"no {SUBSCRIPTIONS}")
        data = payload(message)
        ledger, slots = current(), asyncio.Semaphore(IN_FLIGHT)
        # A client per delivery: it belongs to this event loop, and nothing has to close it later.
        async with self.egress.client(self.timeout) as client:
            pushes = await asyncio.gather(
                *(self._settled(client, message, data, s, ledger, slots) for s in unique))
        return self._outcome(pushes)

    async def _settled(self, client: httpx.AsyncClient, message: OutgoingMessage, data: bytes,
                       subscription: Any, ledger: Ledger, slots: asyncio.Semaphore) -> _Push:
        """One subscription's push, unless an earlier attempt has its answer (never twice)."""
        address = _endpoint(subscription) or repr(subscription)
        settled = ledger.settled(address)
        if settled is not None:
            return _Push(_EARLIER[settled.status], f"{settled.status} on an earlier attempt",
                         settled.provider_message_id)
        async with slots:
            push = await self._push(client, message, data, subscription, ledger.on_sent(address))
        if push.answered:
            ledger.answered(address, _STATUS.get(push.verdict, "answered"), push.location)
        return push

    def _outcome(self, pushes: list[_Push]) -> Outcome:
        by: dict[Verdict, list[_Push]] = {"accepted": [], "gone": [], "rejected": [], "transient": [],
                                          "unknown": []}
        for push in pushes:
            by[push.verdict].append(push)
        summary = ", ".join(f"{len(v)} {k}" for k, v in by.items() if v)
        words = "; ".join(p.words for p in pushes if p.words)[:1000]
        if by["accepted"]:
            # No reason: the outbox reads a reason as why a message was not sent.
            return delivered(by["accepted"][0].location)
        if by["transient"]:
            # (the push service's origin and status: no word of its answer)
            waits = [p.retry_after for p in by["transient"] if p.retry_after is not None]
            raise TransientError(f"web push: {by['transient'][0].detail} ({summary})", detail=words,
                                 retry_after=max(waits) if waits else None)
        if by["unknown"]:
            return unknown(f"web push: no answer, it may have arrived ({summary})", detail=words)
        if by["rejected"]:
            return failed(f"web push: {by['rejected'][0].detail} ({summary})", detail=words)
        return unreachable(f"web push: every subscription is gone ({by['gone'][0].detail}; {summary})",
                           detail=words)

    async def _push(self, client: httpx.AsyncClient, message: OutgoingMessage, data: bytes,
                    subscription: Any, on_sent: Callable[[], None]) -> _Push:
        endpoint = _endpoint(subscription)
        if endpoint is None:
            return _Push("rejected", "malformed subscription: no http(s) endpoint")
        try:
            self.egress.check_url(endpoint)  # user:password, a refused literal address
        except EgressRefused as exc:  # the endpoint may not be reached: no retry changes that
            return _Push("rejected", str(exc), words=_origin(endpoint))
        try:
            body = WebPusher(subscription).encode(data, "aes128gcm")["body"]
        except (WebPushException, ValueError, TypeError, KeyError, AttributeError) as exc:
            return _Push("rejected", "malformed subscription keys", words=f"{_origin(endpoint)}: {exc}")
        if len(body) > MAX_BODY_BYTES:
            return _Push("rejected", f"payload of {len(body)} encrypted bytes is over {MAX_BODY_BYTES}")
        claims: dict[str, str | int] = {"aud": _origin(endpoint), "sub": self.subject,
                                        "exp": int(time.time()) + TOKEN_SECONDS}
        try:
            signed = self.vapid.sign(claims)
        except VapidException:  # an origin py_vapid cannot sign for (an IPv6 literal, say)
            return _Push("rejected", "malformed subscription endpoint", words=_origin(endpoint))
        headers = {**signed, "Content-Encoding": "aes128gcm",
                   "Content-Type": "application/octet-stream", "TTL": str(self.ttl),
                   "Topic": topic(message.idempotency_key)}
        async def trace(event: str, info: Any) -> None:
            if event.endswith("send_request_headers.started"):
                on_sent()

        try:
            # The whole request is bounded: httpx's timeout is per read, and a trickling answer
            # would outlast it.
            async with asyncio.timeout(self.timeout), client.stream(
                    "POST", endpoint, content=body, headers=headers,
                    extensions={"trace": trace}) as response:
                text = await _head(response)
        except EgressRefused as exc:  # what the name resolved to may not be reached
            return _Push("rejected", str(exc), words=_origin(endpoint))
        except (TimeoutError, httpx.TimeoutException):
            return _Push("transient", f"no answer within {self.timeout:g}s", words=_origin(endpoint),
                         answered=False)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            return _Push("rejected", "malformed subscription endpoint", words=str(exc))
        except httpx.TransportError as exc:  # connection refused or reset, a broken answer
            tls = tls_failure(exc)
            if tls:  # the push service's certificate does not verify: named, not retried
                return _Push("rejected", tls, words=_origin(endpoint))
            return _Push("transient", type(exc).__name__, words=f"{_origin(endpoint)}: {exc}",
                         answered=False)
        return await self._verdict(message, subscription, endpoint, response, text)

    async def _verdict(self, message: OutgoingMessage, subscription: Any, endpoint: str,
                       response: httpx.Response, text: str) -> _Push:
        # The reason holds the status; the service's origin and words go to the debug log.
        status, origin = response.status_code, _origin(endpoint)
        said = f"{origin}: {text}" if text else origin
        if 200 <= status < 300:
            return _Push("accepted", f"{status}", response.headers.get("Location"))
        if status in _GONE:
            # The browser unsubscribed or the subscription expired: it will never work again.
            # The store call may block on its database, so it runs off the event loop. If it
            # fails, the push is still settled: raising would re-push to the browsers that got
            # it, and the next message finds the subscription gone again.
            try:
                await asyncio.to_thread(self.profiles.remove_from_profile, message.user_id,
                                        SUBSCRIPTIONS, subscription)
            except Exception as exc:
                return _Push("gone", f"{status}, not removed from the profile", words=f"{origin}: {exc}")
            return _Push("gone", f"{status}", words=said)
        if status in _LATER or status >= 500:
            retry = response.headers.get("Retry-After")
            # Not the service's words ({said}): this goes into the retried failure's message.
            return _Push("transient", f"{status}{f' (Retry-After {retry[:40]})' if retry else ''}",
                         words=said, retry_after=retry_after_seconds(retry) if status in (429, 503) else None)
        # 400 bad request, 401/403 VAPID refused, 413 payload too large, redirects (not followed:
        # the signed push is for that origin only), and anything else unexpected.
        return _Push("rejected", f"the push service refused it: {status}", words=said)


async def _head(response: httpx.Response) -> str:
    """The first bytes of the answer, for a reason; a push service we do not control must not
    make the worker buffer whatever it sends."""
    head = bytearray()
    async for chunk in response.aiter_bytes():
        head += chunk[:MAX_REPLY_BYTES - len(head)]
        if len(head) >= MAX_REPLY_BYTES:
            break
    return head.decode("utf-8", errors="replace")[:200].strip()


def _endpoint(subscription: Any) -> str | None:
    endpoint = subscription.get("endpoint") if isinstance(subscription, dict) else None
    if not isinstance(endpoint, str):
        return None
    parts = urlsplit(endpoint)
    return endpoint if parts.scheme in ("http", "https") and parts.hostname else None


def _origin(endpoint: str) -> str:
    """The VAPID ``aud``: scheme, host and port of the endpoint."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
