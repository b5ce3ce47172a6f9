"""Readiness: can this process route an event now? Temporal answers, and the store takes a write.

``/health`` says the process lives (restart it if not); ``/ready`` says whether to send it
traffic: a Temporal cluster that is down or hung, or a store that is down or locked by another
process, makes it "not ready" until they come back.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.client import Client

from journeys.language.limits import brief
from journeys.store.database import Store

log = logging.getLogger("journeys.http")


async def readiness(client: Client, store: Store, wait: float) -> dict[str, str]:
    """Each part's state, "ok" or "unavailable", each waited for at most ``wait`` seconds (at
    the same time); why a part is unavailable goes to the log, not to whoever asks."""

    async def temporal() -> None:
        async with asyncio.timeout(wait):  # a hung server never answers: no wait of the SDK's
            if not await client.service_client.check_health(timeout=timedelta(seconds=wait)):
                raise RuntimeError("Temporal's health check says it is not serving")

    async def writable() -> None:
        async with asyncio.timeout(wait + 1):
            await asyncio.to_thread(store.check_writable, wait)

    names = ("temporal", "store")
    done = await asyncio.gather(temporal(), writable(), return_exceptions=True)
    states: dict[str, str] = {}
    for name, result in zip(names, done, strict=True):
        states[name] = "ok" if result is None else "unavailable"
        if isinstance(result, BaseException):
            log.warning("not ready", extra={"part": name,
                                            "error": brief(str(result) or type(result).__name__)})
    return states
