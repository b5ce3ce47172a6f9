"""SMS and WhatsApp through Twilio's Messages API.

``POST {JOURNEYS_TWILIO_URL}/2010-04-01/Accounts/{sid}/Messages.json`` with HTTP basic auth
(account sid, auth token) and the form fields To, From and Body; WhatsApp numbers carry the
``whatsapp:`` prefix. Twilio's Messages API takes no idempotency key: an attempt whose answer
was lost (a timeout after Twilio accepted) is retried, and may send the text twice.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlsplit

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
from activities.providers.ledger import current
from journeys.egress import is_loopback
from journeys.language.models import Channel
from journeys.settings import Settings
from journeys.store.bounces import Bounces, bounces_of

_WHATSAPP = "whatsapp:"
#: E.164: a plus, a country code (no leading 0), at most 15 digits in all.
E164 = re.compile(r"\+[1-9]\d{6,14}")
#: What people write between the digits: spaces, dashes, dots, parentheses.
_SEPARATORS = re.compile(r"[ \-.()]")
#: Control characters a text message must not carry (newline and tab may; CR is a newline's).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


#: Twilio's errors that say a number will never take a message: not a valid number (21211),
#: the recipient unsubscribed from the sender (21610).
BOUNCES = frozenset({21211, 21610})


def phone_number(value: object, whatsapp: bool) -> str | None:
    """The profile's phone as E.164 (+14155550100), separators dropped; None if it is not one.
    ``whatsapp:`` may prefix it on the WhatsApp channel only: on SMS it is no phone number."""
    if not isinstance(value, str):
        return None
    number = value.strip()
    if number.startswith(_WHATSAPP):
        if not whatsapp:
            return None
        number = number.removeprefix(_WHATSAPP)
    number = _SEPARATORS.sub("", number)
    return number if E164.fullmatch(number) and number.isascii() else None


def control_characters(text: str) -> str | None:
    """The first control character of ``text`` as U+XXXX, or None: a NUL, ESC or BEL in a
    text message is a template's mistake, refused rather than sent to the handset."""
    found = _CONTROL.search(text.replace("\r\n", "\n").replace("\r", "\n"))
    return f"U+{ord(found[0]):04X}" if found else None


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
    # Twilio reports each message's fate to serve, if it can reach it (not this machine).
    public = urlsplit(settings.public_url).hostname or ""
    callback = None if is_loopback(public) else f"{settings.public_url}/twilio/status"
    return TwilioProvider(
        account_sid=sid, auth_token=token, sender=sender, channel=channel,
        base_url=settings.twilio_url, timeout=settings.send_timeout, status_callback=callback,
        bounces=bounces_of(profiles))


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
                 base_url: str, timeout: float, status_callback: str | None = None,
                 bounces: Bounces | None = None) -> None:
        self.whatsapp = channel == Channel.whatsapp
        self.channel, self.bounces = channel.value, bounces
        self.status_callback = status_callback
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
        number = phone_number(phone, self.whatsapp)
        if number is None:
            return unreachable("the profile's phone is not an E.164 number (+14155550100)"
                               + ("" if self.whatsapp else "; whatsapp: numbers are for WhatsApp"))
        text = message.content.get("text", "")
        control = control_characters(text)
        if control:
            return failed(f"the text holds a control character ({control})")
        form = {"To": _address(number, self.whatsapp), "From": self.sender, "Body": text}
        if self.status_callback:
            form["StatusCallback"] = self.status_callback
        what = "Twilio WhatsApp" if self.whatsapp else "Twilio SMS"
        ledger = current()
        settled = ledger.settled(number)  # an earlier attempt's answer, or too many unanswered
        if settled is not None:
            return settled
        if self.bounces and (why := await asyncio.to_thread(self.bounces.known, self.channel, number)):
            return unreachable(f"the number bounced before ({why})")
        try:
            async with attempt(self.timeout, what):
                reply = await request(self.clients, "POST", self.url, data=form, auth=self.auth,
                                      what=what, on_sent=ledger.on_sent(number))
        except Refused as exc:
            ledger.answered(number, "failed")
            return failed(str(exc), detail=exc.detail)
        if reply.verdict == "delivered":
            body = reply.json()
            sid = body.get("sid") if isinstance(body, dict) else None
            ledger.answered(number, "delivered", str(sid) if sid else None)
            return delivered(str(sid) if sid else None)
        if reply.verdict == "transient":
            ledger.answered(number, "answered")
            summary, detail = _error(reply)
            raise TransientError(summary + reply.retry_after(), detail=detail,
                                 retry_after=reply.retry_delay())
        ledger.answered(number, "failed")
        # 400 (a bad number, an opted-out user), 401/403, 404: Twilio's code is the reason, its
        # words ("The 'To' number +1415... is not valid") the debug log's.
        summary, detail = _error(reply)
        body = reply.json()
        if self.bounces and isinstance(body, dict) and body.get("code") in BOUNCES:
            await asyncio.to_thread(self.bounces.remember, self.channel, number, summary)
        return failed(summary, detail=detail)
