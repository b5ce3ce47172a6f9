"""What the HTTP providers (webhook, FCM, Twilio) share: their httpx clients, one bounded request,
and how an HTTP status reads under the provider contract.

A vendor's answer is read to at most :data:`MAX_REPLY_BYTES`: a reason needs its first lines,
and an endpoint we do not control must not make the worker buffer whatever it sends.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from activities.providers import TransientError
from activities.providers.egress import Egress

#: How much of an answer is read; the rest is dropped.
MAX_REPLY_BYTES = 64 * 1024

#: How a status reads: 408 Request Timeout, 425 Too Early and 429 Too Many Requests are "later".
Verdict = Literal["delivered", "transient", "failed"]
_TRANSIENT_4XX = frozenset({408, 425, 429})


def classify(status: int) -> Verdict:
    """2xx: accepted; 408, 425, 429 and 5xx: a later attempt may pass; anything else: rejected.

    Redirects count as rejected: they are not followed, since a signed request or a bearer
    token should reach the address it was meant for and no other.
    """
    if 200 <= status < 300:
        return "delivered"
    if status in _TRANSIENT_4XX or status >= 500:
        return "transient"
    return "failed"


class Refused(Exception):
    """httpx refused to send the request as given (a bad URL, method or header): no retry helps.

    Its message is a class (history keeps it); httpx's words, which may quote the URL, are in
    ``detail`` (the debug log)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def tls_failure(exc: BaseException) -> str | None:
    """The TLS error behind a connection failure ("certificate verify failed"), if it is one.

    A certificate that does not verify stays so until an operator acts: it is a permanent
    failure, named as such, not a connection error retried without end."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({cause.verify_message or 'verify failed'})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed ({cause.reason or type(cause).__name__})"
        cause = cause.__cause__ or cause.__context__
    return None


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3); None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value[:12])
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - (now or datetime.now(UTC))).total_seconds(), 0.0)


@dataclass(frozen=True)
class Reply:
    """An answer, read up to MAX_REPLY_BYTES."""

    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def verdict(self) -> Verdict:
        return classify(self.status)

    def text(self, limit: int = 200) -> str:
        """The body's first ``limit`` characters, for a reason."""
        return self.body.decode("utf-8", errors="replace")[:limit].strip()

    def json(self) -> Any:
        """The body as JSON, or None if it is not JSON (an error page of a proxy, say)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def retry_after(self) -> str:
        value = self.headers.get("retry-after")
        return f" (Retry-After: {value[:40]})" if value else ""

    def retry_delay(self) -> float | None:
        """The seconds a 429 or 503 asks us to wait (``Retry-After``), else None."""
        if self.status not in (429, 503):
            return None
        return retry_after_seconds(self.headers.get("retry-after"))


class Clients:
    """One ``httpx.AsyncClient`` per event loop.

    A client's pooled connections belong to the loop that opened them, so a provider that
    outlives one loop (a test, or an activity run with ``asyncio.run``) gets a new client on the
    next; within a worker's loop, connections are reused across messages.
    """

    def __init__(self, timeout: float, egress: Egress | None = None, **options: Any) -> None:
        self.timeout = timeout
        self.egress = egress  # for addresses that come from data: checked connections only
        self.options = options
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary())

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = (self.egress.client(self.timeout, **self.options) if self.egress else
                      httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), follow_redirects=False,
                                        **self.options))
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close this loop's client (the others close with their loops)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


@asynccontextmanager
async def attempt(seconds: float, what: str) -> AsyncIterator[None]:
    """Bound a whole delivery attempt (every request in it, a token refresh included).

    httpx's own timeout bounds each read and write, not a server that trickles its answer.
    """
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise TransientError(f"{what}: no answer within {seconds:g} s") from None


async def request(clients: Clients, method: str, url: str, *, what: str,
                  headers: Mapping[str, str] | None = None, content: bytes | None = None,
                  data: Mapping[str, str] | None = None, auth: httpx.Auth | None = None,
                  on_sent: Callable[[], None] | None = None) -> Reply:
    """Send one request and read its answer.

    Raises TransientError when the request did not get an answer (timeout, connection refused
    or reset, a broken answer) and :class:`Refused` when httpx will not send it at all or TLS
    fails. ``on_sent`` is called when the request's first bytes leave (after connecting): from
    then on a missing answer means the vendor may have taken it.
    """
    client = clients.get()
    extensions: dict[str, Any] = {}
    if on_sent is not None:
        async def trace(event: str, info: Any) -> None:
            if event.endswith("send_request_headers.started"):
                on_sent()
        extensions["trace"] = trace
    try:
        built = client.build_request(method, url, headers=headers, content=content, data=data,
                                     extensions=extensions)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, TypeError) as exc:
        raise Refused(f"{what}: cannot send: {type(exc).__name__}", detail=str(exc)) from None
    try:
        response = await client.send(built, auth=auth, stream=True)
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk[:MAX_REPLY_BYTES - len(body)]
                if len(body) >= MAX_REPLY_BYTES:
                    break
        finally:
            await response.aclose()
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
        raise Refused(f"{what}: cannot send: {type(exc).__name__}", detail=str(exc)) from None
    except httpx.TimeoutException:
        raise TransientError(f"{what}: timed out after {clients.timeout:g} s") from None
    except httpx.ConnectError as exc:
        tls = tls_failure(exc)
        if tls:
            raise Refused(f"{what}: {tls}", detail=str(exc)) from None
        raise TransientError(f"{what}: {type(exc).__name__}", detail=str(exc)) from None
    except httpx.RequestError as exc:  # connection refused or reset, a broken answer
        raise TransientError(f"{what}: {type(exc).__name__}", detail=str(exc)) from None
    return Reply(response.status_code, response.headers, bytes(body))
