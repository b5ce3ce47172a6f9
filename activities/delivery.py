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
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.models import (
    DETAIL,
    CancelMessageInput,
    SendMessageInput,
    SendResult,
    addressed,
    message_event,
    node_of,
    public_reason,
)
from activities.providers import (
    Outcome,
    OutgoingMessage,
    Provider,
    TransientError,
    delivered,
    failed,
    unknown,
)
from activities.providers.ledger import Ledger, using
from activities.providers.outbox import OutboxProvider
from journeys.events import tracking_id
from journeys.language.limits import brief
from journeys.language.models import Channel
from journeys.links import Links, Message, tracked_html
from journeys.personalization.choice import DEFAULT, Chosen, choose
from journeys.personalization.personalize import MessageRefused, MissingValue, TemplateError, render_message
from journeys.store import catalogs, outcomes, subscriptions, variants
from journeys.store.caps import CapCounter
from journeys.store.database import AddressMark, OutboxRow, Store
from telemetry.logs import count_message, observe_send, with_ids

__all__ = ["Delivery", "OutgoingMessage", "Provider", "default_providers"]

#: Statuses no attempt changes any more: a retry or a replay finds them and sends nothing.
FINAL = frozenset({"delivered", "skipped", "failed", "unreachable", "cancelled", "capped",
                   "dropped_quiet_hours", "held_out", "unknown", "kept", "unsubscribed"})
#: How often a send that waits tells Temporal it is alive (the SDK sends at most one heartbeat
#: per 0.8 x the activity's heartbeat_timeout): a cancel (the user left), a terminate or a
#: worker's shutdown reaches a send only through its heartbeats. Fast sends send none.
HEARTBEAT_EVERY = 1.0
HEARTBEAT_AFTER = 2.0
#: The longest Retry-After honoured: a vendor asking for more is asked again after this.
MAX_RETRY_AFTER = 3600.0
_log = structlog.get_logger("delivery")
T = TypeVar("T")


def default_providers() -> dict[Channel, Provider]:
    """The embedded default: every channel to the outbox."""
    return {channel: OutboxProvider() for channel in Channel}


class Delivery:
    """The send activities, with their store, providers and attempt bound injected."""

    def __init__(self, store: Store, providers: Mapping[Channel, Provider] | None = None,
                 send_timeout: float = 30.0, caps: CapCounter | None = None,
                 unknown_retries: int = 2, links: Links | None = None) -> None:
        self.store = store
        self.links = links  # a marketing email's unsubscribe link (none: the templates have none)
        self.providers = dict(providers or default_providers())
        self.send_timeout = send_timeout
        self.caps = caps  # JOURNEYS_CAPS, checked and counted at send time
        self.unknown_retries = unknown_retries  # JOURNEYS_SEND_UNKNOWN_RETRIES

    @activity.defn(name="cancel_message")
    @with_ids
    def cancel_message(self, input: CancelMessageInput) -> SendResult:
        """Settle a send the journey gave up on: cancelled, unless an attempt delivered it."""
        message = addressed(input.message)
        row = OutboxRow(
            idempotency_key=message.idempotency_key, journey_id=message.journey_id,
            user_id=message.user_id, workflow_id=message.workflow_id, node_id=message.node_id,
            channel=message.channel.value, status="cancelled", reason=f"not sent: {input.reason}")
        before = self.store.outbox_get(row.idempotency_key)  # a retry finds it settled: no count
        pending = before is not None and before.status == "pending"
        settled = self._settled_by_addresses(row.idempotency_key) if pending else None
        if settled is not None:  # an attempt cut short reached someone, or may have
            self.store.outbox_finish(row.idempotency_key, settled.status, reason=settled.reason)
            count_message(row.channel, settled.status)
        stored = self.store.outbox_cancel(row)
        if stored.status == "cancelled" and (before is None or before.status == "pending"):
            count_message(row.channel, stored.status)
        _log.info("message cancelled", channel=row.channel, status=stored.status)
        return _result(stored)

    def _settled_by_addresses(self, idempotency_key: str) -> Outcome | None:
        """What the addresses' record says of a message whose attempt was cut short: delivered
        if an address took it, unknown if a request left without an answer; else None."""
        marks = self.store.send_marks(idempotency_key)
        taken = [m.provider_message_id or "" for m in marks.values() if m.status == "delivered"]
        if taken:
            return delivered(",".join(filter(None, taken)) or None)
        if any(m.status == "sent" for m in marks.values()):
            return unknown("no answer before the send was stopped: it may have arrived")
        return None

    @activity.defn(name="send_message")
    @with_ids  # journey, user, node, workflow and run ids on every line
    async def send_message(self, input: SendMessageInput) -> SendResult:
        input = addressed(input)
        result = await _heartbeating(self._send_message(input))
        if input.end is not None and not activity.is_cancelled():
            # The walk ends after this send: its end record rides here (once per entry, so a
            # retry records nothing new). Cancelled, the user left: the workflow records why.
            await asyncio.to_thread(outcomes.record, self.store, _ended(input))
            result = result.model_copy(update={"ended": True})
        return result

    async def _send_message(self, input: SendMessageInput) -> SendResult:
        log = _log.bind(channel=input.channel.value, attempt=activity.info().attempt)
        # One thread hop for everything before the vendor (store reads, render, caps, claim).
        prepared = await asyncio.to_thread(self._prepare, input, log)
        if isinstance(prepared, SendResult):
            return prepared
        stored, profile, marks = prepared
        provider = self.providers[input.channel]
        message = OutgoingMessage(
            idempotency_key=input.idempotency_key, journey_id=input.journey_id, node_id=input.node_id,
            user_id=input.user_id, channel=input.channel, content=stored.content, profile=profile,
            unsubscribe_url=self._unsubscribe_url(input))
        ledger = Ledger(marks, self.unknown_retries)
        started = time.monotonic()
        try:
            outcome = await self._attempt(provider, message, ledger, log)
        finally:
            observe_send(input.channel.value, provider.name, timedelta(seconds=time.monotonic() - started))
            # Also when cancelled (the user left) or cut off: what each address answered stays.
            await asyncio.shield(asyncio.to_thread(self._record, input.idempotency_key, ledger))
        reason = brief(f"not sent: {outcome.reason}") if outcome.reason else None
        await asyncio.to_thread(self.store.outbox_finish, input.idempotency_key, outcome.status,
                                reason=reason, provider=provider.name,
                                provider_message_id=(outcome.provider_message_id or "")[:200] or None)
        count_message(input.channel.value, outcome.status)
        # The reason may quote the vendor's answer (a phone number, the rendered url): debug only.
        log.info(f"message {outcome.status}", provider=provider.name,
                 provider_message_id=outcome.provider_message_id)
        log.debug("message reason", reason=reason, detail=outcome.detail)
        return _result(stored.model_copy(update={"status": outcome.status, "reason": reason}))

    async def _attempt(self, provider: Provider, message: OutgoingMessage, ledger: Ledger,
                       log: structlog.typing.FilteringBoundLogger) -> Outcome:
        """One attempt: the provider's outcome; or, when it raised for a retry, delivered (an
        address took it: a retry would repeat it there), unknown (no answer too many times),
        or the retry itself (at the vendor's Retry-After, if it gave one)."""
        try:
            with using(ledger):
                async with asyncio.timeout(self.send_timeout):
                    return await provider.deliver(message)
        except TimeoutError:  # the vendor may have taken it: the retry carries the same key
            error = TransientError(f"{provider.name}: no answer within {self.send_timeout:g} s")
        except TransientError as exc:  # retried; the vendor's words (an address?) at debug only
            log.debug("attempt failed", error=str(exc), detail=exc.detail)
            error = exc
        ids = ledger.delivered_ids()
        if ids is not None:
            return delivered(",".join(filter(None, ids)) or None)
        if ledger.exhausted():
            return unknown(f"{provider.name}: no answer to {self.unknown_retries + 1} attempts, "
                           "it may have arrived")
        if error.retry_after is None:
            raise error
        delay = min(error.retry_after, MAX_RETRY_AFTER)
        left = _time_left()
        if left is not None and delay > left:
            return failed(f"{provider.name} asked to retry after {error.retry_after:g} s, "
                          "past the journey's time left")
        raise ApplicationError(str(error), type="TransientError",
                               next_retry_delay=timedelta(seconds=max(delay, 1.0))) from None

    def _record(self, idempotency_key: str, ledger: Ledger) -> None:
        self.store.send_mark(idempotency_key, {key: ledger.marks[key] for key in ledger.changed})

    def _prepare(self, input: SendMessageInput, log: structlog.typing.FilteringBoundLogger
                 ) -> SendResult | tuple[OutboxRow, dict[str, Any], dict[str, AddressMark]]:
        """The message claimed in the outbox (pending) with its content, and the profile; or the
        result of a send that ends here: recorded already, skipped, refused or capped."""
        store = self.store
        named = (input.journey_id, input.kept_event) if input.kept_event else None
        known, profile, kept = store.send_context(input.idempotency_key, input.user_id, named)
        if known and known.status in FINAL:
            return _result(known, duplicate=True)
        event = message_event(input, store.kept_event, kept)
        # The user's version: their variant (or the winner) and locale; a retry keeps the first's.
        chosen = content_of(input, profile, lambda journey, node: variants.winner(store, journey, node))
        row = OutboxRow(
            idempotency_key=input.idempotency_key, journey_id=input.journey_id,
            user_id=input.user_id, workflow_id=input.workflow_id, node_id=input.node_id,
            channel=input.channel.value, status="pending",
            event_name=event.name if event else None, event_id=event.id if event else None,
            locale=chosen.locale, variant=chosen.variant)
        # A marketing message to a user unsubscribed from its channel or topic: recorded, not
        # sent (checked at its first attempt; one under way to its provider is not called back).
        if known is None and not input.transactional:
            why = subscriptions.unsubscribed(store, input.user_id, input.channel.value, input.topic)
            if why:
                return self._settle(row, "unsubscribed", f"not sent: {why}", log)
        try:
            # A retry delivers what the first attempt rendered: the key fixes the content.
            link = self._unsubscribe_url(input)
            content = known.content if known else self._tracked(input, render_message(
                input.channel, chosen.message, profile, event.properties if event else None,
                {"unsubscribe_url": link} if link else None,
                items=lambda keys: catalogs.lookup(store, keys)))  # the items as they are now
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
        if self.caps and not (input.ignore_caps or input.transactional) and known is None:
            cap = self.caps.claim(input.user_id, input.channel.value, input.idempotency_key)
            if cap is not None:
                return self._settle(row.model_copy(update={"content": content}), "capped", cap.reason, log)
        stored, _ = store.outbox_claim(row.model_copy(update={"content": content}))
        if stored.status in FINAL:
            return _result(stored, duplicate=True)
        return stored, profile, store.send_marks(input.idempotency_key) if known else {}

    def _unsubscribe_url(self, input: SendMessageInput) -> str | None:
        """A marketing email's one-click unsubscribe link: from its channel, or its topic."""
        if self.links is None or input.channel != Channel.email or input.transactional:
            return None
        return self.links.url("unsubscribe", _bound(input))

    def _tracked(self, input: SendMessageInput, content: dict[str, str]) -> dict[str, str]:
        """An email's html with its clicks and opens tracked (as the node says)."""
        if (self.links is None or input.channel != Channel.email or "html" not in content
                or not (input.track_clicks or input.track_opens)):
            return content
        html = tracked_html(content["html"], self.links, _bound(input), clicks=input.track_clicks,
                            opens=input.track_opens)
        return {**content, "html": html}

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


def _bound(input: SendMessageInput) -> Message:
    """What the links of ``input``'s message are bound to."""
    return Message(input.user_id, input.channel.value, input.topic or "",
                   tracking_id(input.idempotency_key), input.journey_id, input.node_id)


def _time_left() -> float | None:
    """Seconds until the send's schedule-to-close deadline (the journey's end), if it has one."""
    info = activity.info()
    if not info.schedule_to_close_timeout or not info.scheduled_time:
        return None
    deadline = info.scheduled_time + info.schedule_to_close_timeout
    return (deadline - datetime.now(UTC)).total_seconds()


async def _heartbeating(work: Awaitable[T]) -> T:
    """Await ``work``, heartbeating while it takes longer than HEARTBEAT_AFTER."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_AFTER)
        while not done:
            activity.heartbeat()
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY)
        return task.result()
    finally:
        if not task.done():  # cancelled: the send stops and records what it learned
            task.cancel()
            # A vendor call may not stop at once: heartbeat on, or the server would time the
            # send out and the workflow record it cancelled while it may still arrive.
            while not (await asyncio.wait({task}, timeout=HEARTBEAT_EVERY))[0]:
                activity.heartbeat()


def _ended(input: SendMessageInput) -> outcomes.Outcome:
    """The entry's end, as the workflow would have recorded it after this send."""
    assert input.end is not None
    return outcomes.Outcome(
        journey_id=input.journey_id, run_key=input.end.run_key, kind="ended",
        user_id=input.user_id, workflow_id=input.workflow_id, node_id=input.node_id,
        paths=input.end.paths, held_out=input.held_out, at=datetime.now(UTC), nodes=input.end.nodes)


def content_of(input: SendMessageInput, profile: Mapping[str, Any],
               winner: Callable[[str, str], str | None]) -> Chosen:
    """The templates ``input`` sends: its own, or its node's in its journey's version, in the
    user's variant (``winner(journey, node)``: the one everyone gets, if any) and locale."""
    if input.message is not None:
        return Chosen(input.message, DEFAULT, None)
    node = node_of(input)
    won = winner(input.journey_id, node.id) if node.variants else None
    return choose(node, profile, input.journey_id, input.user_id, won)


def _result(row: OutboxRow, *, duplicate: bool = False) -> SendResult:
    """What the workflow learns of a send: status, the reason's code and a digest, never the
    content nor the reason's detail."""
    encoded = json.dumps(row.content, sort_keys=True, ensure_ascii=False).encode()
    # Kept by the outbox provider (no vendor): the journey walks on as if the vendor took it
    # (its ``delivered`` path, so a journey tried locally walks as it will in production); the
    # outbox row, ``status``, ``outbox`` and ``stats`` say ``kept``.
    status = "delivered" if row.status == "kept" else row.status
    return SendResult(status=status, reason=public_reason(row.reason), duplicate=duplicate,
                      variant=row.variant,
                      digest=hashlib.sha256(encoded).hexdigest()[:16] if row.content else None,
                      size=sum(len(text.encode()) for text in row.content.values()))
