"""Delivery: one protocol every channel's provider implements, and the send activity."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Protocol

import structlog
from pydantic import BaseModel
from temporalio import activity

from activities.models import CancelMessageInput, SendMessageInput, SendResult
from journeys.limits import brief
from journeys.models import ONLINE_CHANNELS, Channel
from journeys.personalize import MessageRefused, MissingValue, TemplateError, render_message
from journeys.store import OutboxRow, Store


class OutgoingMessage(BaseModel):
    """A rendered message, ready for a provider. Providers must honour the idempotency key."""

    idempotency_key: str
    user_id: str
    channel: Channel
    content: dict[str, str]
    profile: dict[str, object]


class Provider(Protocol):
    """What every channel's provider does: deliver once per idempotency key, or raise."""

    name: str

    def deliver(self, message: OutgoingMessage) -> None: ...


class OutboxProvider:
    """Records the rendered message as delivered and sends nothing: the outbox is the record."""

    name = "outbox"

    def deliver(self, message: OutgoingMessage) -> None:
        return None


def default_providers() -> dict[Channel, Provider]:
    return {channel: OutboxProvider() for channel in Channel}


_FINAL = ("delivered", "skipped", "failed", "cancelled")
_log = structlog.get_logger("delivery")


class Delivery:
    """The send activity, with its store and providers injected."""

    def __init__(self, store: Store, providers: Mapping[Channel, Provider] | None = None) -> None:
        self.store = store
        self.providers = dict(providers or default_providers())

    @activity.defn(name="cancel_message")
    def cancel_message(self, input: CancelMessageInput) -> SendResult:
        """Settle a send the journey gave up on: cancelled, unless an attempt delivered it."""
        message = input.message
        row = OutboxRow(
            idempotency_key=message.idempotency_key, journey_id=message.journey_id,
            user_id=message.user_id, workflow_id=message.workflow_id, node_id=message.node_id,
            channel=message.channel.value, status="cancelled", reason=f"not sent: {input.reason}")
        stored = self.store.outbox_cancel(row)
        _log.info("message cancelled", journey_id=message.journey_id, user_id=message.user_id,
                  node_id=message.node_id, status=stored.status)
        return _result(stored)

    @activity.defn(name="send_message")
    def send_message(self, input: SendMessageInput) -> SendResult:
        log = _log.bind(journey_id=input.journey_id, user_id=input.user_id, node_id=input.node_id,
                        workflow_id=input.workflow_id, channel=input.channel.value,
                        attempt=activity.info().attempt)
        known = self.store.outbox_get(input.idempotency_key)
        if known and known.status in _FINAL:
            return _result(known, duplicate=True)
        profile = self.store.profile(input.user_id)
        # Online channels render in the app, where the journey's event is not available.
        personalized = None if input.channel in ONLINE_CHANNELS else input.event
        event = personalized.properties if personalized else None
        row = OutboxRow(
            idempotency_key=input.idempotency_key, journey_id=input.journey_id,
            user_id=input.user_id, workflow_id=input.workflow_id, node_id=input.node_id,
            channel=input.channel.value, status="pending",
            event_name=personalized.name if personalized else None,
            event_id=personalized.id if personalized else None)
        try:
            # A retry delivers what the first attempt rendered: the key fixes the content.
            content = known.content if known else render_message(
                input.channel, input.message, profile, event)
        except (MissingValue, TemplateError) as exc:  # the template or the data: skip it
            skipped = row.model_copy(update={"status": "skipped", "reason": brief(f"not sent: {exc}")})
            stored, _ = self.store.outbox_claim(skipped)
            log.warning("message skipped", reason=stored.reason)
            return _result(stored)
        except MessageRefused as exc:  # rendered, but not sendable: no retry can change that
            failed = row.model_copy(update={"status": "failed", "reason": brief(f"not sent: {exc}")})
            stored, _ = self.store.outbox_claim(failed)
            log.warning("message failed", reason=stored.reason)
            return _result(stored)
        stored, _ = self.store.outbox_claim(row.model_copy(update={"content": content}))
        if stored.status in _FINAL:
            return _result(stored, duplicate=True)
        provider = self.providers[input.channel]
        provider.deliver(OutgoingMessage(idempotency_key=input.idempotency_key, user_id=input.user_id,
                                         channel=input.channel, content=stored.content,
                                         profile=profile))
        self.store.outbox_finish(input.idempotency_key, "delivered", provider=provider.name)
        log.info("message delivered", provider=provider.name)
        return _result(stored.model_copy(update={"status": "delivered"}))


def _result(row: OutboxRow, *, duplicate: bool = False) -> SendResult:
    """What the workflow learns of a send: status, reason and a digest, never the content."""
    encoded = json.dumps(row.content, sort_keys=True, ensure_ascii=False).encode()
    return SendResult(status=row.status, reason=row.reason, duplicate=duplicate,
                      digest=hashlib.sha256(encoded).hexdigest() if row.content else None,
                      size=sum(len(text.encode()) for text in row.content.values()))
