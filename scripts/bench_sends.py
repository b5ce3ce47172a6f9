"""Benchmark: async sends against sync sends on threads, to a vendor that takes its time.

    python -m scripts.bench_sends [--messages 400] [--latency 0.2]

Why ``send_message`` is an async activity: with a vendor answering in ``--latency`` seconds,
throughput is the number of sends in flight over the latency. The webhook provider (async
httpx, as the worker builds it) runs with 16 and 64 in flight; a sync ``httpx.Client`` posting
the same signed request runs on 16 and 64 threads. The receiver is a threaded HTTP server on
loopback that holds each answer for the latency.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import resource
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx

from activities.providers import OutgoingMessage, Provider
from activities.providers.registry import build_providers
from activities.providers.webhook import signature
from journeys.egress import LOOPBACK
from journeys.language.models import Channel
from journeys.settings import Settings
from journeys.store.database import Store
from tests.helpers.vendors import Answer, Received, WebhookReceiver, serving

SECRET = "bench-secret"
BODY = b'{"order": "A-17"}'


class SlowReceiver(WebhookReceiver):
    """Checks each signature, and answers after the vendor's latency."""

    def __init__(self, latency: float) -> None:
        super().__init__(SECRET)
        self.latency = latency
        self.server.socket.listen(256)  # 64 connections at once must not be reset (backlog was 5)

    def answer(self, received: Received) -> Answer:
        answer = super().answer(received)
        answer.delay = self.latency
        return answer


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _timed(label: str, n: int, run: Callable[[], Awaitable[int]]) -> None:
    started, cpu = time.monotonic(), _cpu()
    ok = await run()
    seconds = time.monotonic() - started
    print(f"  {label:<32} {n / seconds:7.0f} messages/s  {1000 * (_cpu() - cpu) / n:5.2f} ms CPU a "
          f"message  ({ok}/{n} accepted)")


async def _async_sends(provider: Provider, url: str, n: int, in_flight: int) -> int:
    gate = asyncio.Semaphore(in_flight)

    async def send(i: int) -> bool:
        message = OutgoingMessage(
            idempotency_key=f"k-{in_flight}-{i}", journey_id="j", node_id="n", user_id="u",
            channel=Channel.webhook, content={"url": url, "body": BODY.decode()})
        async with gate:
            return (await provider.deliver(message)).status == "delivered"
    return sum(await asyncio.gather(*(send(i) for i in range(n))))


def _sync_sends(url: str, n: int, threads: int) -> int:
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(threads) as pool:
        def post(i: int) -> bool:
            headers = {"Content-Type": "application/json", "Idempotency-Key": f"s-{i}",
                       "X-Journeys-Signature": signature(SECRET, BODY, int(time.time()))}
            return client.post(url, content=BODY, headers=headers).status_code == 200
        return sum(pool.map(post, range(n)))


async def main(args: argparse.Namespace) -> None:
    n = args.messages
    with serving(SlowReceiver(args.latency)) as receiver, TemporaryDirectory() as tmp:
        url = f"{receiver.url}/orders"
        store = Store(f"sqlite:///{Path(tmp) / 'journeys.db'}")
        settings = Settings(JOURNEYS_WEBHOOK_SECRET=SECRET, JOURNEYS_EGRESS_ALLOW=LOOPBACK)
        provider = build_providers(settings, store)[Channel.webhook]
        print(f"A vendor answering in {args.latency * 1000:.0f} ms, {n} messages each:")
        for in_flight in (16, 64):
            await _timed(f"async provider, {in_flight} in flight", n,
                         functools.partial(_async_sends, provider, url, n, in_flight))
        for threads in (16, 64):
            await _timed(f"sync httpx, {threads} threads", n,
                         functools.partial(asyncio.to_thread, _sync_sends, url, n, threads))
        closing = getattr(provider, "aclose", None)
        if closing:
            await closing()
        store.engine.dispose()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_sends", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the vendor takes")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
