"""SMS and WhatsApp through Twilio's Messages API.

``POST {JOURNEYS_TWILIO_URL}/2010-04-01/Accounts/{sid}/Messages.json`` with HTTP basic auth
(account sid, auth token) and the form fields To, From and Body; WhatsApp numbers carry the
``whatsapp:`` prefix. Twilio's Messages API takes no idempotency key: an attempt whose answer
was lost (a timeout after Twilio accepted) is retried, and may send the text twice.
"""

from __future__ import annotations

from typing import Any

import httpx

from activities.providers import (
    Outcome,
    OutgoingMessage,
    ProfileEditor,
    TransientError,
    delivered,
    failed,
    unreachable,
)
from activities.providers.http import Clients, Refused, Reply, attempt, request
from journeys.models import Channel
from journeys.settings import Settings

_WHATSAPP = "whatsapp:"


def _sender(settings: Settings, channel: Channel) -> tuple[str, str | None]:
    """The From setting a channel needs: its name and value."""
    if channel == Channel.whatsapp:
        return "JOURNEYS_TWILIO_WHATSAPP_FROM", settings.twilio_whatsapp_from
    return "JOURNEYS_TWILIO_FROM", settings.twilio_from


def missing(settings: Settings, channel: Channel) -> list[str]:
    name, sender = _sender(settings, channel)
    needed = {"JOURNEYS_TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
              "JOURNEYS_TWILIO_AUTH_TOKEN": settings.twilio_auth_token, name: sender}
    return [setting for setting, value in needed.items() if not value]


def build(settings: Settings, profiles: ProfileEditor, channel: Channel) -> TwilioProvider:
    _, sender = _sender(settings, channel)
    sid, token = settings.twilio_account_sid, settings.twilio_auth_token
    if not (sid and token and sender):
        raise ValueError(f"Twilio needs {', '.join(missing(settings, channel))}")
    return TwilioProvider(
        account_sid=sid, auth_token=token, sender=sender, channel=channel,
        base_url=settings.twilio_url, timeout=settings.send_timeout)


def _address(number: str, whatsapp: bool) -> str:
    number = number.strip()
    return f"{_WHATSAPP}{number.removeprefix(_WHATSAPP)}" if whatsapp else number


def _error(reply: Reply) -> tuple[str, str]:
    """Twilio's status and error code, and its message (``{"code": 21211, "message": ...}``,
    which may quote the number), else the body."""
    body: Any = reply.json()
    if isinstance(body, dict) and body.get("message"):
        code = f", error {body['code']}" if body.get("code") is not None else ""
        return f"Twilio answered {reply.status}{code}", str(body["message"])[:200]
    return f"Twilio answered {reply.status}", reply.text()


class TwilioProvider:
    """One Messages API call per message, to the profile's ``phone``."""

    name = "twilio"

    def __init__(self, *, account_sid: str, auth_token: str, sender: str, channel: Channel,
                 base_url: str, timeout: float) -> None:
        self.whatsapp = channel == Channel.whatsapp
        self.sender = _address(sender, self.whatsapp)
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.auth = httpx.BasicAuth(account_sid, auth_token)
        self.timeout = timeout
        self.clients = Clients(timeout)

    async def aclose(self) -> None:
        """Close this event loop's connections (at shutdown, or a test's end)."""
        await self.clients.aclose()

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        phone = message.profile.get("phone")
        if not isinstance(phone, str) or not phone.strip():
            return unreachable("no phone number in the profile")
        form = {"To": _address(phone, self.whatsapp), "From": self.sender,
                "Body": message.content.get("text", "")}
        what = "Twilio WhatsApp" if self.whatsapp else "Twilio SMS"
        try:
            async with attempt(self.timeout, what):
                reply = await request(self.clients, "POST", self.url, data=form, auth=self.auth,
                                      what=what)
        except Refused as exc:
            return failed(str(exc), detail=exc.detail)
        if reply.verdict == "delivered":
            body = reply.json()
            sid = body.get("sid") if isinstance(body, dict) else None
            return delivered(str(sid) if sid else None)
        if reply.verdict == "transient":
            summary, detail = _error(reply)
            raise TransientError(summary + reply.retry_after(), detail=detail)
        # 400 (a bad number, an opted-out user), 401/403, 404: Twilio's code is the reason, its
        # words ("The 'To' number +1415... is not valid") the debug log's.
        summary, detail = _error(reply)
        return failed(summary, detail=detail)
