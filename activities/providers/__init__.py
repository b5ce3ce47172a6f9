"""The one delivery protocol every channel's provider implements, and what a provider answers.

The contract: ``deliver`` returns an :class:`Outcome` for what is final — ``delivered`` (with
the provider's message id), ``unreachable`` (no address or token, or every token dead) or
``failed`` (the provider rejected it) — and raises :class:`TransientError` (or lets a timeout
or connection error escape) for what a later attempt may fix: the send activity's retry policy
then retries with backoff. Every call carries the message's idempotency key; a provider passes
it on wherever its vendor accepts one, so a retry after a lost answer is not a second message.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from journeys.language.models import Channel


class OutgoingMessage(BaseModel):
    """A rendered message, ready for a provider."""

    idempotency_key: str
    journey_id: str
    node_id: str
    user_id: str
    channel: Channel
    content: dict[str, str]  # the rendered fields (title, body, subject, html, text, url ...)
    profile: dict[str, Any] = Field(default_factory=dict)  # addresses: email, phone, tokens ...
    unsubscribe_url: str | None = None  # a marketing email's one-click unsubscribe (journeys.links)


class Outcome(BaseModel):
    """What became of a message, for good.

    ``reason`` is a code or class (``webhook answered 422``, ``SMTP recipient refused: 550``,
    ``egress refused: loopback address``): the outbox, the journey's history and ``status`` keep
    it. ``detail`` is the vendor's own words (which may quote an address, a number or the
    message): the debug log only.
    """

    status: Literal["delivered", "unreachable", "failed", "unknown", "kept"]
    reason: str | None = None
    provider_message_id: str | None = None
    detail: str = ""


def delivered(provider_message_id: str | None = None) -> Outcome:
    return Outcome(status="delivered", provider_message_id=provider_message_id)


def unreachable(reason: str, detail: str = "") -> Outcome:
    return Outcome(status="unreachable", reason=reason, detail=detail)


def failed(reason: str, detail: str = "") -> Outcome:
    return Outcome(status="failed", reason=reason, detail=detail)


def unknown(reason: str, detail: str = "") -> Outcome:
    """The request left more than JOURNEYS_SEND_UNKNOWN_RETRIES + 1 times and no answer came:
    the message may have arrived; no further attempt is made."""
    return Outcome(status="unknown", reason=reason, detail=detail)


class TransientError(Exception):
    """The provider could not take the message now (timeout, 429, 5xx): try again later.

    Its message is what the SDK logs and the journey's history keep for the failed attempt: the
    vendor and its status, never the vendor's own words, which may quote an address, a number
    or the message. Those go in ``detail``, for the debug log only.
    """

    def __init__(self, message: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.detail = detail
        self.retry_after = retry_after  # seconds the vendor asked us to wait (429, 503), if it did


class Provider(Protocol):
    """What every channel's provider does: deliver once per idempotency key, or raise."""

    name: str

    async def deliver(self, message: OutgoingMessage) -> Outcome: ...


class ProfileEditor(Protocol):
    """What a provider may change in a profile: drop a dead push token or subscription."""

    def remove_from_profile(self, user_id: str, property: str, value: Any) -> None: ...
