"""What each address of one message answered, across the attempts of its send.

An address is what a provider sends to: a push token, a browser subscription, a phone number, a
webhook URL, an email address (kept as a digest). A retry consults the ledger so that

- an address that answered for good (delivered, refused, gone) is never sent to again: a device
  that got the push does not get it a second time because another device's call timed out;
- a request that left and got no answer (a timeout after the bytes went, a dropped connection)
  counts as *unanswered*: the vendor may have taken it. After JOURNEYS_SEND_UNKNOWN_RETRIES
  retries with no answer the address is settled ``unknown`` and not sent to again.

The send activity reads the ledger before an attempt and writes it back after (also when the
attempt is cancelled or times out). A worker killed mid-attempt loses that attempt's entries:
its addresses are retried, at most once more per kill.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from activities.providers import Outcome, delivered, failed, unknown, unreachable
from journeys.store.database import AddressMark
from journeys.store.tables import address_digest

#: An address's answer that no retry changes.
FINAL = frozenset({"delivered", "failed", "unreachable"})


def digest(address: str) -> str:
    """The address as the ledger keeps it: no token or number in the store twice."""
    return address_digest(address)


class Ledger:
    """One message's addresses: what earlier attempts recorded, and what this one learns."""

    def __init__(self, marks: dict[str, AddressMark] | None = None, unknown_retries: int = 2) -> None:
        self.marks = dict(marks or {})
        self.unknown_retries = unknown_retries
        self.changed: set[str] = set()
        self._in_flight: set[str] = set()

    def settled(self, address: str) -> Outcome | None:
        """The outcome an earlier attempt settled for ``address``; None: send to it."""
        mark = self.marks.get(digest(address))
        if mark is None:
            return None
        if mark.status == "delivered":
            return delivered(mark.provider_message_id)
        if mark.status == "failed":
            return failed("refused on an earlier attempt")
        if mark.status == "unreachable":
            return unreachable("gone on an earlier attempt")
        if mark.unanswered > self.unknown_retries:
            return unknown(f"no answer to {mark.unanswered} requests: it may have arrived")
        return None

    def on_sent(self, address: str) -> Callable[[], None]:
        """Call when the request's first bytes leave: from then on its outcome is unknown."""
        def sent() -> None:
            key = digest(address)
            if key in self._in_flight:
                return
            self._in_flight.add(key)
            mark = self.marks.get(key) or AddressMark(status="sent")
            self.marks[key] = mark.model_copy(update={"unanswered": mark.unanswered + 1, "status": "sent"})
            self.changed.add(key)
        return sent

    def answered(self, address: str, status: str, provider_message_id: str | None = None) -> None:
        """The vendor answered ``address``: final (delivered, failed, unreachable) or
        ``answered`` (a retryable answer: 429, 5xx; it did not take the message)."""
        key = digest(address)
        mark = self.marks.get(key) or AddressMark(status=status)
        unanswered = mark.unanswered - (1 if key in self._in_flight else 0)
        self._in_flight.discard(key)
        self.marks[key] = AddressMark(status=status, unanswered=max(unanswered, 0),
                                      provider_message_id=provider_message_id)
        self.changed.add(key)

    def delivered_ids(self) -> list[str | None] | None:
        """The vendor ids of the addresses that took the message (None: none did)."""
        found = [m.provider_message_id for m in self.marks.values() if m.status == "delivered"]
        return found or None

    def unanswered(self) -> bool:
        """Did a request of this attempt leave without an answer?"""
        return any(self.marks[key].status == "sent" for key in self.changed)

    def exhausted(self) -> bool:
        """Every address this attempt touched is settled, some with no answer too often: the
        send ends ``unknown`` rather than try again."""
        touched = [self.marks[key] for key in self.changed]
        return bool(touched) and any(m.status == "sent" for m in touched) and all(
            m.status in FINAL or (m.status == "sent" and m.unanswered > self.unknown_retries)
            for m in touched)


_current: ContextVar[Ledger | None] = ContextVar("send_ledger", default=None)


def current() -> Ledger:
    """The ledger of the message being sent (the send activity sets it); a fresh one outside."""
    return _current.get() or Ledger()


@contextmanager
def using(ledger: Ledger) -> Iterator[Ledger]:
    """Make ``ledger`` the one providers see while they deliver a message."""
    token = _current.set(ledger)
    try:
        yield ledger
    finally:
        _current.reset(token)
