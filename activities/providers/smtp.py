"""Email over SMTP (aiosmtplib): one connection per message, to ``profile.email``.

SMTP has no idempotency key. The next best thing: the ``Message-ID`` is derived from the
message's idempotency key, so every attempt of one message carries the same id and a copy that
went out twice (the server took it, its answer was lost) can be recognized as one message.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, parseaddr
from typing import Any

import aiosmtplib

from activities.providers import (
    Outcome,
    OutgoingMessage,
    ProfileEditor,
    TransientError,
    delivered,
    failed,
    unreachable,
)
from activities.providers.http import tls_failure
from activities.providers.ledger import current
from journeys.egress import is_loopback
from journeys.language.models import Channel
from journeys.language.problems import UsageError
from journeys.settings import Settings
from journeys.store.bounces import Bounces, bounces_of

MESSAGE_ID_DOMAIN = "journeys"


def message_id(idempotency_key: str) -> str:
    """The ``Message-ID`` of every attempt of a message: same key, same id."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@{MESSAGE_ID_DOMAIN}>"


def address(value: object) -> str | None:
    """``value`` as a bare ``local@domain`` address, or None if it is not one."""
    if not isinstance(value, str) or not value or any(c in value for c in "\r\n\t <>,;\"()"):
        return None
    try:
        parsed = Address(addr_spec=value)
    except (ValueError, IndexError, MessageError):  # the email package's parser raises all three
        return None
    return parsed.addr_spec if parsed.username and parsed.domain else None


def _one_line(text: str) -> str:
    """A header value on one line: a template's trailing newline must not break the header."""
    return re.sub(r"\s*[\r\n]+\s*", " ", text).strip()


#: Control characters no subject may hold (CR and LF are folded to a space, tab is allowed):
#: NUL, VT, FF, FS-RS, ESC, DEL, C1 (NEL) and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


class Unsendable(ValueError):
    """The rendered message cannot be an email as it is: no retry changes it."""


def _subject(text: str) -> str:
    found = _CONTROL.search(text)
    if found:
        raise Unsendable(f"the subject holds a control character (U+{ord(found[0]):04X})")
    return _one_line(text)


def build_email(message: OutgoingMessage, sender: str, to: str, mailto: str | None = None) -> EmailMessage:
    """The MIME message: multipart/alternative when both text and html are given. A marketing
    email carries its one-click unsubscribe (RFC 8058), and ``mailto`` beside it if given (the
    link's token in the subject: the mailbox's owner acts on it)."""
    email = EmailMessage()
    email["From"] = sender
    email["To"] = to
    email["Subject"] = _subject(message.content.get("subject", ""))
    email["Date"] = formatdate(localtime=False, usegmt=True)
    email["Message-ID"] = message_id(message.idempotency_key)
    if message.unsubscribe_url:
        token = message.unsubscribe_url.rsplit("/", 1)[-1]
        also = f", <mailto:{mailto}?subject=unsubscribe%20{token}>" if mailto else ""
        email["List-Unsubscribe"] = f"<{message.unsubscribe_url}>{also}"
        email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    text, html = message.content.get("text"), message.content.get("html")
    if text is not None or html is None:
        email.set_content(text or "")
        if html is not None:
            email.add_alternative(html, subtype="html")
    else:
        email.set_content(html, subtype="html")
    return email


class _Client(aiosmtplib.SMTP):
    """An SMTP client that says when the message's data starts to leave: from then on, no
    answer means the server may have taken it (the ledger counts such attempts)."""

    def __init__(self, on_sent: Any, **options: Any) -> None:
        super().__init__(**options)
        self._on_sent = on_sent

    async def data(self, message: str | bytes, /, **options: Any) -> Any:
        self._on_sent()
        return await super().data(message, **options)


def _answer(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}".strip()


def _code(exc: aiosmtplib.SMTPResponseException) -> str:
    """The reply code and its enhanced status code (RFC 3463) if the answer starts with one."""
    enhanced = re.match(r"[245]\.\d{1,3}\.\d{1,3}(?=\s|$)", exc.message or "")
    return f"{exc.code} {enhanced[0]}" if enhanced else str(exc.code)


class SmtpProvider:
    """Delivers email through one SMTP server; 5xx is final, 4xx and I/O trouble are transient."""

    name = "smtp"

    def __init__(self, settings: Settings, bounces: Bounces | None = None) -> None:
        assert settings.smtp_host and settings.email_from, "missing() said what is needed"
        self.bounces = bounces  # addresses whose server refused them for good: not tried again
        self.host, self.port, self.timeout = settings.smtp_host, settings.smtp_port, settings.send_timeout
        self.username, self.password = settings.smtp_username, settings.smtp_password
        self.use_tls, self.start_tls = settings.smtp_tls == "tls", settings.smtp_tls == "starttls"
        self.sender = settings.email_from  # the From header, possibly with a display name
        self.envelope_from = address(parseaddr(settings.email_from)[1])
        # One address, on one line: a CR from a CRLF .env file would end the headers early.
        several = len(getaddresses([settings.email_from])) != 1
        if self.envelope_from is None or several or any(ch < " " for ch in settings.email_from):
            raise UsageError(f"JOURNEYS_EMAIL_FROM: '{settings.email_from}' is not an email address")
        if settings.smtp_tls == "none" and self.username and not is_loopback(self.host):
            # AUTH PLAIN in clear text would hand the password to anyone on the path.
            raise UsageError(f"JOURNEYS_SMTP_TLS=none with JOURNEYS_SMTP_USERNAME: the password "
                             f"would cross the network in clear to '{self.host}'; use starttls or "
                             "tls (none only for a server on this machine)")
        self._local_hostname: str | None = None
        self.unsubscribe_mailto = settings.unsubscribe_mailto

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        to = address(message.profile.get("email"))
        if to is None:
            return unreachable("no email address in the profile" if not message.profile.get("email")
                               else "the profile's email is not an address")
        try:
            email = build_email(message, self.sender, to, self.unsubscribe_mailto)
        except Unsendable as exc:
            return failed(str(exc))
        except ValueError as exc:  # a header the email package refuses: no retry changes it
            return failed("the email package refused a header", detail=str(exc))
        ledger = current()
        settled = ledger.settled(to)  # an earlier attempt's answer, or too many unanswered
        if settled is not None:
            return settled
        if self.bounces and (why := await asyncio.to_thread(self.bounces.known, "email", to)):
            return unreachable(f"the address bounced before ({why})")
        try:
            async with asyncio.timeout(self.timeout):  # the whole attempt, not each command
                if self._local_hostname is None:  # getfqdn may wait on DNS: once, off the loop
                    self._local_hostname = await asyncio.to_thread(socket.getfqdn)
                client = _Client(
                    ledger.on_sent(to), hostname=self.host, port=self.port, username=self.username,
                    password=self.password, use_tls=self.use_tls, start_tls=self.start_tls,
                    local_hostname=self._local_hostname, timeout=self.timeout)
                async with client:
                    await client.send_message(email, sender=self.envelope_from, recipients=[to])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            ledger.answered(to, "answered")
            outcome = self._refused(exc.recipients[0] if exc.recipients else None, "recipient refused")
            if self.bounces:  # a 5xx to RCPT: the address is refused for good
                await asyncio.to_thread(self.bounces.remember, "email", to, outcome.reason or "")
            return outcome
        except aiosmtplib.SMTPAuthenticationError as exc:
            # The worker's credentials, not this message: retry until an operator fixes them.
            raise TransientError("SMTP authentication failed", detail=_answer(exc)) from None
        except aiosmtplib.SMTPResponseException as exc:
            ledger.answered(to, "answered")  # (a 5xx settles the message below: failed)
            return self._refused(exc, "refused")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            tls = tls_failure(exc)
            if tls:  # a certificate that does not verify stays so: named, not retried
                return failed(f"SMTP {self.host}:{self.port}: {tls}")
            # Connection refused or lost, a timeout, STARTTLS not offered: a later attempt may work.
            # (our client's words: connection refused, no STARTTLS; not the server's answer)
            raise TransientError(f"SMTP {self.host}:{self.port}: {type(exc).__name__}: {exc}") from exc
        ledger.answered(to, "delivered", email["Message-ID"])
        return delivered(email["Message-ID"])

    @staticmethod
    def _refused(exc: aiosmtplib.SMTPResponseException | None, what: str) -> Outcome:
        """5xx is the server's final word on this message; anything else (4xx) may change."""
        if exc is not None and 500 <= exc.code < 600:
            # The code (550 5.1.1) only: the server's words quote the address.
            return failed(f"SMTP {what}: {_code(exc)}", detail=_answer(exc))
        # (from None: the server's answer, which may quote the address, stays out of the traceback)
        raise TransientError(f"SMTP {what}, try later ({exc.code if exc else 'no answer'})",
                             detail=_answer(exc) if exc else "") from None


def missing(settings: Settings, channel: Channel) -> list[str]:
    """The settings email still needs before it leaves the outbox."""
    needed = {"JOURNEYS_SMTP_HOST": settings.smtp_host, "JOURNEYS_EMAIL_FROM": settings.email_from}
    return [name for name, value in needed.items() if not value]


def build(settings: Settings, profiles: ProfileEditor, channel: Channel) -> SmtpProvider:
    return SmtpProvider(settings, bounces_of(profiles))
