"""The send activity: render once, record in the outbox, hand to the channel's provider.

``send_message`` is an async activity: providers speak to their vendors with async clients
(httpx, aiosmtplib), so a slow vendor holds no thread; the store (SQLAlchemy, blocking) and
rendering (bounded to a second) run in threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import structlog
from temporalio import activity

from activities.models import DETAIL, CancelMessageInput, SendMessageInput, SendResult, public_reason
from activities.providers import OutgoingMessage, Provider, TransientError
from activities.providers.outbox import OutboxProvider
from journeys.caps import CapCounter
from journeys.events import personalization_event
from journeys.limits import brief
from journeys.logs import count_message, observe_send, with_ids
from journeys.models import Channel
from journeys.personalize import MessageRefused, MissingValue, TemplateError, render_message
from journeys.store import OutboxRow, Store

__all__ = ["Delivery", "OutgoingMessage", "Provider", "default_providers"]

#: Statuses no attempt changes any more: a retry or a replay finds them and sends nothing.
FINAL = frozenset({"delivered", "skipped", "failed", "unreachable", "cancelled", "capped",
                   "dropped_quiet_hours", "held_out"})
_log = structlog.get_logger("delivery")


def default_providers() -> dict[Channel, Provider]:
    """The embedded default: every channel to the outbox."""
    return {channel: OutboxProvider() for channel in Channel}


class Delivery:
    """The send activities, with their store, providers and attempt bound injected."""

    def __init__(self, store: Store, providers: Mapping[Channel, Provider] | None = None,
                 send_timeout: float = 30.0, caps: CapCounter | None = None) -> None:
        self.store = store
        self.providers = dict(providers or default_providers())
        self.send_timeout = send_timeout
        self.caps = caps  # JOURNEYS_CAPS, checked and counted at send time

    @activity.defn(name="cancel_message")
    @with_ids
    def cancel_message(self, input: CancelMessageInput) -> SendResult:
        """Settle a send the journey gave up on: cancelled, unless an attempt delivered it."""
        message = input.message
        row = OutboxRow(
            idempotency_key=message.idempotency_key, journey_id=message.journey_id,
            user_id=message.user_id, workflow_id=message.workflow_id, node_id=message.node_id,
            channel=message.channel.value, status="cancelled", reason=f"not sent: {input.reason}")
        before = self.store.outbox_get(row.idempotency_key)  # a retry finds it settled: no count
        stored = self.store.outbox_cancel(row)
        if stored.status == "cancelled" and (before is None or before.status == "pending"):
            count_message(row.channel, stored.status)
        _log.info("message cancelled", channel=row.channel, status=stored.status)
        return _result(stored)

    @activity.defn(name="send_message")
    @with_ids  # journey, user, node, workflow and run ids on every line
    async def send_message(self, input: SendMessageInput) -> SendResult:
        log = _log.bind(channel=input.channel.value, attempt=activity.info().attempt)
        # One thread hop for everything before the vendor (store reads, render, caps, claim).
        prepared = await asyncio.to_thread(self._prepare, input, log)
        if isinstance(prepared, SendResult):
            return prepared
        stored, profile = prepared
        provider = self.providers[input.channel]
        message = OutgoingMessage(
            idempotency_key=input.idempotency_key, journey_id=input.journey_id, node_id=input.node_id,
            user_id=input.user_id, channel=input.channel, content=stored.content, profile=profile)
        started = time.monotonic()
        try:
            outcome = await asyncio.wait_for(provider.deliver(message), self.send_timeout)
        except TimeoutError:  # the vendor may have taken it: the retry carries the same key
            raise TransientError(f"{provider.name}: no answer within {self.send_timeout:g} s") from None
        except TransientError as exc:  # retried; the vendor's words (an address?) at debug only
            log.debug("attempt failed", error=str(exc), detail=exc.detail)
            raise
        finally:
            observe_send(input.channel.value, provider.name, timedelta(seconds=time.monotonic() - started))
        reason = brief(f"not sent: {outcome.reason}") if outcome.reason else None
        await asyncio.to_thread(self.store.outbox_finish, input.idempotency_key, outcome.status,
                                reason=reason, provider=provider.name,
                                provider_message_id=outcome.provider_message_id)
        count_message(input.channel.value, outcome.status)
        # The reason may quote the vendor's answer (a phone number, the rendered url): debug only.
        log.info(f"message {outcome.status}", provider=provider.name,
                 provider_message_id=outcome.provider_message_id)
        log.debug("message reason", reason=reason, detail=outcome.detail)
        return _result(stored.model_copy(update={"status": outcome.status, "reason": reason}))

    def _prepare(self, input: SendMessageInput, log: structlog.typing.FilteringBoundLogger
                 ) -> SendResult | tuple[OutboxRow, dict[str, Any]]:
        """The message claimed in the outbox (pending) with its content, and the profile; or the
        result of a send that ends here: recorded already, skipped, refused or capped."""
        store = self.store
        known, profile = store.send_context(input.idempotency_key, input.user_id)
        if known and known.status in FINAL:
            return _result(known, duplicate=True)
        event = personalization_event(input.channel, input.event)
        row = OutboxRow(
            idempotency_key=input.idempotency_key, journey_id=input.journey_id,
            user_id=input.user_id, workflow_id=input.workflow_id, node_id=input.node_id,
            channel=input.channel.value, status="pending",
            event_name=event.name if event else None, event_id=event.id if event else None)
        try:
            # A retry delivers what the first attempt rendered: the key fixes the content.
            content = known.content if known else render_message(
                input.channel, input.message, profile, event.properties if event else None)
        # The value's name, the template's words or the url go in the outbox row only (DETAIL).
        except MissingValue as exc:  # the data: skip it
            return self._settle(row, "skipped", "not sent: missing value", log, detail=str(exc))
        except TemplateError as exc:  # the template
            return self._settle(row, "skipped", "not sent: template error", log, detail=str(exc))
        except MessageRefused as exc:  # rendered, but not sendable: no retry can change that
            return self._settle(row, "failed", f"not sent: {exc.field} refused", log,
                                detail=exc.reason)
        if input.held_out:  # the control group walks the journey unmessaged: what it would have got
            return self._settle(row.model_copy(update={"content": content}), "held_out",
                                "not sent: the user is in the journey's control group", log)
        # Caps count each key once: a retry passes again (and one that found the message
        # recorded by an earlier attempt passed them then).
        if self.caps and not input.ignore_caps and known is None:
            cap = self.caps.claim(input.user_id, input.channel.value, input.idempotency_key)
            if cap is not None:
                return self._settle(row.model_copy(update={"content": content}), "capped", cap.reason, log)
        stored, _ = store.outbox_claim(row.model_copy(update={"content": content}))
        if stored.status in FINAL:
            return _result(stored, duplicate=True)
        return stored, profile

    def _settle(self, row: OutboxRow, status: str, reason: str,
                log: structlog.typing.FilteringBoundLogger, detail: str = "") -> SendResult:
        """Record a message that will not go out (and why, with ``detail`` for the outbox row
        only), once; a replay finds the record."""
        full = f"{reason}{DETAIL}{detail}" if detail else reason
        final = OutboxRow.model_validate({**row.model_dump(), "status": status, "reason": brief(full)})
        stored, inserted = self.store.outbox_claim(final)
        if inserted:  # recorded now, not by an earlier attempt
            count_message(row.channel, status)
        log.warning(f"message {stored.status}")  # the reason may quote values: in the outbox
        log.debug("message reason", reason=stored.reason)
        return _result(stored)


def _result(row: OutboxRow, *, duplicate: bool = False) -> SendResult:
    """What the workflow learns of a send: status, the reason's code and a digest, never the
    content nor the reason's detail."""
    encoded = json.dumps(row.content, sort_keys=True, ensure_ascii=False).encode()
    return SendResult(status=row.status, reason=public_reason(row.reason), duplicate=duplicate,
                      digest=hashlib.sha256(encoded).hexdigest() if row.content else None,
                      size=sum(len(text.encode()) for text in row.content.values()))
