"""Push through Firebase Cloud Messaging's HTTP v1 API.

One ``POST {JOURNEYS_FCM_URL}/v1/projects/{project}/messages:send`` per token in the profile's
``push_tokens``, with an OAuth access token of the service account in JOURNEYS_FCM_CREDENTIALS.
FCM keeps no idempotency key, so the message's key travels in ``data.idempotency_key`` for the
app to drop a repeat. A token FCM calls UNREGISTERED (the app was uninstalled) leaves the
profile; only that answer removes one, so a wrong project (a plain 404) cannot wipe every token.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import structlog
from google.auth import exceptions as auth_exceptions
from google.auth import transport
from google.oauth2 import service_account

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
from activities.providers.http import Clients, Refused, Reply, attempt, request
from activities.providers.ledger import Ledger, current
from journeys.events import tracking_id
from journeys.language.models import Channel
from journeys.language.problems import UsageError
from journeys.settings import Settings

_log = structlog.get_logger("fcm")

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
#: Requests of one message in flight at once: a user's many devices must not fill the
#: connection pool (httpx rescans its queue on every change: a long queue costs the event loop
#: quadratic time, and every other send waits behind it).
IN_FLIGHT = 4
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def missing(settings: Settings, channel: Channel) -> list[str]:
    return [] if settings.fcm_credentials else ["JOURNEYS_FCM_CREDENTIALS"]


def build(settings: Settings, profiles: ProfileEditor, channel: Channel) -> FcmProvider:
    if not settings.fcm_credentials:
        raise ValueError("JOURNEYS_FCM_CREDENTIALS is not set")
    credentials, project = load_credentials(settings.fcm_credentials)
    return FcmProvider(credentials, project, profiles, base_url=settings.fcm_url,
                       timeout=settings.send_timeout, max_tokens=settings.push_max_tokens)


def load_credentials(path: Path) -> tuple[service_account.Credentials, str]:
    """The service account's credentials and project; a UsageError names what is wrong."""
    try:
        info = json.loads(Path(path).read_text())
        credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
        project = info["project_id"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"JOURNEYS_FCM_CREDENTIALS: '{path}' is not a usable service-account "
                         f"JSON file ({type(exc).__name__}: {exc})") from None
    return credentials, str(project)


class _Response(transport.Response):
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Any:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.content


class _Request(transport.Request):
    """google-auth's transport over a blocking httpx client: it runs in a worker thread."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.client = httpx.Client(timeout=timeout, follow_redirects=False)

    def __call__(self, url: str, method: str = "GET", body: bytes | None = None,
                 headers: Any = None, timeout: float | None = None, **kwargs: Any) -> _Response:
        try:
            response = self.client.request(method, url, content=body, headers=headers,
                                           timeout=timeout or self.timeout)
        except httpx.HTTPError as exc:
            raise auth_exceptions.TransportError(f"{type(exc).__name__}: {exc}") from exc
        return _Response(response)


class AccessTokens:
    """The service account's access token, kept until google-auth says it is about to expire.

    google-auth refreshes synchronously, so a refresh runs in a thread (one at a time: a burst
    of sends waits for one token request, not one each) and never blocks the event loop.
    """

    def __init__(self, credentials: service_account.Credentials, timeout: float) -> None:
        self.credentials = credentials
        self._request = _Request(timeout)
        self._lock = threading.Lock()

    def _refresh(self) -> str:
        with self._lock:
            if not self.credentials.valid:
                self.credentials.refresh(self._request)
            return str(self.credentials.token)

    async def get(self) -> str:
        if self.credentials.valid:
            return str(self.credentials.token)
        try:
            return await asyncio.to_thread(self._refresh)
        except auth_exceptions.GoogleAuthError as exc:
            # A network failure, or a key the token endpoint refused: a retry after the
            # operator fixes the key (or the endpoint recovers) delivers the message.
            raise TransientError(f"FCM access token: {type(exc).__name__}", detail=str(exc)) from None

    def close(self) -> None:
        self._request.client.close()

    def drop(self, token: str) -> None:
        """FCM refused ``token`` (401): the next send fetches a new one.

        No lock: this runs on the event loop, which must not wait on a refresh in progress
        (a race costs at most one extra token request)."""
        if self.credentials.token == token:
            self.credentials.token = None


def _error(reply: Reply) -> tuple[str | None, str]:
    """FCM's error code (from the FcmError detail), and a reason to record."""
    body = reply.json()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, f"FCM answered {reply.status}: {reply.text()}"
    status = str(error.get("status", ""))
    details = error.get("details")
    codes = [str(d["errorCode"]) for d in (details if isinstance(details, list) else [])
             if isinstance(d, dict) and d.get("@type") == FCM_ERROR and d.get("errorCode")]
    code = codes[0] if codes else None
    reason = f"FCM answered {reply.status} {code or status}: {str(error.get('message', ''))[:200]}"
    return code, reason


def _payload(message: OutgoingMessage, token: str) -> dict[str, Any]:
    """FCM's message for one token: absent or empty fields are left out."""
    content = message.content
    notification = {k: content[k] for k in ("title", "body", "image") if content.get(k)}
    # message_id: what the app reports opens and clicks with (Message Opened / Message Clicked).
    data = {"idempotency_key": message.idempotency_key, "message_id": tracking_id(message.idempotency_key)}
    if content.get("deep_link"):
        data["deep_link"] = content["deep_link"]
    fields: dict[str, Any] = {"token": token, "data": data}
    if notification:
        fields["notification"] = notification
    return {"message": fields}


def _tokens(profile: dict[str, Any]) -> list[str]:
    tokens = profile.get("push_tokens")
    if not isinstance(tokens, list):
        return []
    return list(dict.fromkeys(t for t in tokens if isinstance(t, str) and t))


def newest(items: list[Any], limit: int) -> tuple[list[Any], int]:
    """The newest ``limit`` items (a device appends its token: the last are the newest), and
    how many older ones are left out."""
    return items[-limit:], max(len(items) - limit, 0)


class FcmProvider:
    """A send per push token; delivered when any token took it."""

    name = "fcm"

    def __init__(self, credentials: service_account.Credentials, project: str,
                 profiles: ProfileEditor, *, base_url: str, timeout: float,
                 max_tokens: int = 20) -> None:
        self.project = project
        self.profiles = profiles
        self.url = f"{base_url.rstrip('/')}/v1/projects/{project}/messages:send"
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.tokens = AccessTokens(credentials, timeout)
        self.clients = Clients(timeout)

    async def aclose(self) -> None:
        """Close this event loop's connections and the token endpoint's (at shutdown, or a
        test's end)."""
        await self.clients.aclose()
        self.tokens.close()

    async def _send(self, message: OutgoingMessage, token: str, bearer: str, ledger: Ledger,
                    slots: asyncio.Semaphore) -> Outcome | Exception:
        """One token's outcome, recorded in the ledger (``unreachable``: it is unregistered and
        was removed), or the TransientError that a retry may fix."""
        settled = ledger.settled(token)
        if settled is not None:  # an earlier attempt has this token's answer: never push twice
            return settled
        async with slots:
            outcome = await self._post(message, token, bearer, ledger)
        if isinstance(outcome, Outcome):
            ledger.answered(token, outcome.status, outcome.provider_message_id)
        return outcome

    async def _post(self, message: OutgoingMessage, token: str, bearer: str,
                    ledger: Ledger) -> Outcome | Exception:
        try:
            reply = await request(
                self.clients, "POST", self.url, what="FCM send",
                headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
                content=json.dumps(_payload(message, token)).encode(), on_sent=ledger.on_sent(token))
        except Refused as exc:
            return failed(str(exc), detail=exc.detail)
        except TransientError as exc:
            return exc
        if reply.verdict != "delivered" and (reply.verdict == "transient" or reply.status == 401):
            ledger.answered(token, "answered")  # it answered: the push was not taken
        if reply.verdict == "delivered":
            body = reply.json()
            name = body.get("name") if isinstance(body, dict) else None
            return delivered(str(name) if name else None)
        code, reason = _error(reply)
        summary = f"FCM answered {reply.status}{f' {code}' if code else ''}"  # (reason: debug only)
        if reply.status == 404 and code == "UNREGISTERED":
            await asyncio.to_thread(self.profiles.remove_from_profile, message.user_id,
                                    "push_tokens", token)
            return unreachable(summary, detail=reason)
        if reply.status == 401:  # the access token expired or was revoked early
            self.tokens.drop(bearer)
            return TransientError(summary, detail=reason)
        if reply.verdict == "transient":
            return TransientError(summary + reply.retry_after(), detail=reason,
                                  retry_after=reply.retry_delay())
        return failed(summary, detail=reason)  # 400 INVALID_ARGUMENT, 403 SENDER_ID_MISMATCH, 404

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        """Delivered if any token took it. The newest JOURNEYS_PUSH_MAX_TOKENS tokens only, at
        most IN_FLIGHT requests at once; a token that answered on an earlier attempt (the
        ledger) is not pushed again."""
        tokens, left_out = newest(_tokens(message.profile), self.max_tokens)
        if not tokens:
            return unreachable("no push token in the profile")
        if left_out:
            _log.warning("push tokens left out", left_out=left_out, kept=len(tokens))
        ledger = current()
        slots = asyncio.Semaphore(IN_FLIGHT)
        async with attempt(self.timeout, "FCM"):
            pending = [t for t in tokens if ledger.settled(t) is None]
            bearer = await self.tokens.get() if pending else ""
            results = await asyncio.gather(*(self._send(message, t, bearer, ledger, slots)
                                             for t in tokens))
        sent = [r for r in results if isinstance(r, Outcome) and r.status == "delivered"]
        if sent:  # a device has it; a retry would repeat it on that device
            ids = [r.provider_message_id for r in sent if r.provider_message_id]
            return delivered(",".join(ids) if ids else None)
        transient = [r for r in results if isinstance(r, TransientError)]
        if transient:  # the unregistered tokens are gone: the retry tries the others
            raise TransientError(str(transient[0]), detail=transient[0].detail,
                                 retry_after=max((t.retry_after or 0 for t in transient), default=0) or None)
        if any(isinstance(r, Outcome) and r.status == "unknown" for r in results):
            return unknown("FCM: no answer, it may have arrived")
        rejected = [r for r in results if isinstance(r, Outcome) and r.status == "failed"]
        if rejected:
            return failed(rejected[0].reason or "FCM refused the message", detail=rejected[0].detail)
        return unreachable(f"every push token is unregistered ({len(tokens)} removed)")
