"""How fast a broadcast enters users: never above ``JOURNEYS_AUDIENCE_RATE``, and slower while
Temporal is slow to answer, so that the journeys events start meanwhile stay on time.

Task-queue priority orders the tasks waiting for a worker, but not the starts waiting in the
history service, nor the worker's CPU: a broadcast that outruns the cluster delays every other
journey however it is ranked. So a broadcast is background traffic, paced as LEDBAT (RFC 6817)
paces a background transfer: it watches the time its own entries take (the receipt and the
start). The fastest of the last minutes is the base, what an entry takes on an idle cluster; the
median of the last few, less the base, is the delay the broadcast adds by queueing. Under the
target the rate grows, over it the rate shrinks in proportion, down to half at twice the target.
It costs nothing: no query, no Temporal action; only the entries' own times.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque

#: Minutes of fastest entries kept for the base (a base that only ever fell would not see a
#: cluster that got slower for good; one of a minute would take a long queue for the base).
BASE_MINUTES = 5
#: Users a second the rate may grow by, per batch of entries under the target.
GAIN = 1.0


class Pacing:
    """The pace of one audience journey's entries on this worker (kept across its pages).

    ``most`` is the rate it never exceeds; ``target`` the queueing delay, in seconds, it may add
    to an entry (0: no adapting, always ``most``)."""

    def __init__(self, most: float, target: float, *, start: float = 5.0) -> None:
        self.most, self.target = most, target
        self.least = min(1.0, most)
        self.rate = most if target <= 0 else min(most, start)
        self._next = time.monotonic()
        self._minima: deque[tuple[int, float]] = deque(maxlen=BASE_MINUTES)
        self._lately: list[float] = []

    @property
    def batch(self) -> int:
        """Entries under way at once: about a second's worth, so heartbeats stay a second apart."""
        return max(1, min(16, int(self.rate)))

    async def wait(self) -> None:
        """Until the next entry may start (at most :attr:`rate` a second)."""
        now = time.monotonic()
        at = max(self._next, now)
        self._next = at + 1.0 / self.rate
        if at > now:
            await asyncio.sleep(at - now)

    def took(self, seconds: float) -> None:
        """An entry took ``seconds`` (its receipt and its start)."""
        minute = int(time.monotonic() // 60)
        if self._minima and self._minima[-1][0] == minute:
            self._minima[-1] = (minute, min(self._minima[-1][1], seconds))
        else:
            self._minima.append((minute, seconds))
        self._lately.append(seconds)

    def adapt(self) -> float:
        """After a batch: the rate for the next one, from the delays the batch saw."""
        if self.target <= 0 or not self._lately:
            self._lately.clear()
            return self.rate
        queued = statistics.median(self._lately) - self.base
        self._lately.clear()
        off = max(-1.0, min(1.0, (self.target - queued) / self.target))
        self.rate = self.rate + GAIN * off if off >= 0 else self.rate * (1 + off / 2)
        self.rate = max(self.least, min(self.most, self.rate))
        return self.rate

    @property
    def base(self) -> float:
        return min(m for _, m in self._minima) if self._minima else 0.0
