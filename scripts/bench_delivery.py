"""Benchmark: webhook delivery through the provider against a bare httpx loop, into one receiver.

    python -m scripts.bench_delivery [--messages 1000] [--concurrency 50] [--delivery-rounds 3] [--profile]

- provider: ``WebhookProvider.deliver``, built by ``build_providers`` from settings with
  ``JOURNEYS_WEBHOOK_SECRET`` set, as the worker builds it: it renders the request, adds
  ``Content-Type``, ``Idempotency-Key`` and ``X-Journeys-Signature`` (HMAC-SHA256), sends it
  on its httpx client inside the attempt's timeout, reads the answer to 64 KB and makes an
  ``Outcome``;
- bare: ``httpx.AsyncClient.post`` of the same body with the same ``Content-Type``, on a client
  with the same timeout and pool limits.

Both go to the same receiver: a small asyncio HTTP/1.1 server with keep-alive in a subprocess
(its own core), which checks every signature it is sent (401 if wrong) and answers 200 with an
``X-Request-Id``. Each kind keeps ``--concurrency`` requests in flight over ``--messages``
messages (that many worker coroutines, each taking the next message); the rounds alternate which
kind goes first, after a warm-up of each. Latency: from a message's send call to its answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import httpx

from activities.providers import OutgoingMessage
from activities.providers.registry import build_providers
from activities.providers.webhook import WebhookProvider, signature
from journeys.egress import LOOPBACK
from journeys.language.models import Channel
from journeys.settings import Settings
from scripts.bench_delivery_receiver import SECRET, Receiver, receiver, serve_receiver
from scripts.bench_measure import machine, percentile
from scripts.common import Table, run_script, scratch_store, script_parser
from telemetry.logs import configure_logging

CONTENT_TYPE = {"Content-Type": "application/json"}
#: Below this (provider / bare), the provider costs notably more than the request itself.
NOTABLE_RATIO = 0.8


# --- the two kinds ----------------------------------------------------------------------------

def messages(url: str, n: int, tag: str) -> list[OutgoingMessage]:
    """``n`` rendered webhooks, as the send activity hands them over: distinct keys and bodies."""
    return [OutgoingMessage(
        idempotency_key=f"bench-delivery:{tag}-{i:06d}:notify", journey_id="bench-delivery",
        node_id="notify", user_id=f"u{i:06d}", channel=Channel.webhook,
        content={"url": f"{url}/hooks/journeys", "body": json.dumps(
            {"event": "cart_abandoned", "user_id": f"u{i:06d}", "journey": "abandoned-cart",
             "items": [{"sku": "IPHONE-14-128", "name": "iPhone 14", "price": 799.0}],
             "cart_url": f"https://shop.example/cart/u{i:06d}"})}) for i in range(n)]


@dataclass
class Round:
    kind: str  # "provider" or "bare"
    label: str
    messages: int
    seconds: float
    latencies: list[float]
    cpu: float  # this process, seconds
    receiver_cpu: float
    connections: int  # opened by the client during the round
    failures: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def pct(self, q: float) -> float:
        return percentile(self.latencies, q)


async def drive(n: int, concurrency: int, send: Callable[[int], Awaitable[bool]]
                ) -> tuple[float, list[float], float, int]:
    """``send(i)`` for every i < n, ``concurrency`` at a time; (seconds, latencies, CPU, failures)."""
    latencies: list[float] = []
    failures = 0
    following = iter(range(n))

    async def worker() -> None:
        nonlocal failures
        for i in following:
            t0 = time.perf_counter()
            try:
                ok = await send(i)
            except Exception as exc:
                ok = False
                if not failures:
                    print(f"  failure: {type(exc).__name__}: {exc}", file=sys.stderr)
            latencies.append(time.perf_counter() - t0)
            failures += not ok

    cpu0, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies, time.process_time() - cpu0, failures


@dataclass
class Setup:
    provider: WebhookProvider
    receiver: Receiver
    concurrency: int
    timeout: float
    bare: httpx.AsyncClient | None = None
    control: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=30))
    counter: int = 0

    async def stats(self) -> dict[str, int]:
        """The receiver's counts, read on a client of its own (the two kinds' pools untouched)."""
        reply = await self.control.get(f"{self.receiver.url}/stats")
        return dict(reply.json())

    async def fresh_pools(self) -> None:
        """Both kinds start each round with no connection: httpx's pool costs more CPU a request
        the more connections it holds, and its idle ones expire after 5 s, so a pool left from
        the round before would make the order of the rounds matter."""
        await self.provider.aclose()  # its next message opens a new client on this loop
        if self.bare is not None:
            await self.bare.aclose()
        self.bare = bare_client(self.timeout)

    async def aclose(self) -> None:
        await self.provider.aclose()
        for client in (self.bare, self.control):
            if client is not None:
                await client.aclose()

    async def run(self, kind: str, label: str, n: int) -> Round:
        self.counter += 1
        batch = messages(self.receiver.url, n, f"{kind}{self.counter}")
        await self.fresh_pools()
        if kind == "provider":
            deliver = self.provider.deliver

            async def send(i: int) -> bool:
                return (await deliver(batch[i])).status == "delivered"
        else:
            assert self.bare is not None
            post, url = self.bare.post, batch[0].content["url"]
            bodies = [m.content["body"].encode() for m in batch]

            async def send(i: int) -> bool:
                return (await post(url, content=bodies[i], headers=CONTENT_TYPE)).status_code == 200

        before, recv0 = await self.stats(), self.receiver.cpu()
        seconds, latencies, cpu, failures = await drive(n, self.concurrency, send)
        after, recv1 = await self.stats(), self.receiver.cpu()
        if after["requests"] - before["requests"] != n:
            failures = max(failures, 1)
            print(f"  the receiver got {after['requests'] - before['requests']} requests of {n}",
                  file=sys.stderr)
        result = Round(kind, label, n, seconds, latencies, cpu, recv1 - recv0,
                       after["connections"] - before["connections"], failures)
        print_round(result)
        return result


def bare_client(timeout: float) -> httpx.AsyncClient:
    """What ``activities.providers.http.Clients`` makes, used directly."""
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False)


# --- the header work alone ----------------------------------------------------------------

def header_costs(provider: WebhookProvider, url: str, n: int) -> dict[str, float]:
    """Microseconds per message of what the provider does before the network, one at a time."""
    batch = messages(url, n, "headers")
    client = bare_client(30)

    def per_message(fn: Callable[[OutgoingMessage], object]) -> float:
        t0 = time.perf_counter()
        for m in batch:
            fn(m)
        return (time.perf_counter() - t0) / n * 1e6

    def sign(m: OutgoingMessage) -> object:
        return signature(provider.secret, m.content["body"].encode(), int(time.time()))

    def build_provider(m: OutgoingMessage) -> object:
        method, url, headers, body = provider._request(m)
        return client.build_request(method, url, headers=headers, content=body)

    def build_bare(m: OutgoingMessage) -> object:
        return client.build_request("POST", m.content["url"], headers=CONTENT_TYPE,
                                    content=m.content["body"].encode())

    costs = {"render": per_message(provider._request), "sign": per_message(sign),
             "build provider": per_message(build_provider), "build bare": per_message(build_bare)}
    return costs


# --- printing ---------------------------------------------------------------------------------

ROUNDS = Table(("round", "<9"), ("kind", "<9"), ("msgs", ">5"), ("seconds", ">8.2f"), ("per s", ">8.0f"),
               ("p50 ms", ">7.1f"), ("p99 ms", ">7.1f"), ("cpu µs", ">7.0f"), ("recv %", ">6.0%"),
               ("conns", ">5"), ("fail", ">5"))


def print_round(r: Round) -> None:
    ROUNDS.row(r.label, r.kind, r.messages, r.seconds, r.rate, r.pct(50) * 1000, r.pct(99) * 1000,
               r.cpu / r.messages * 1e6, r.receiver_cpu / r.seconds, r.connections, r.failures)


def describe(args: argparse.Namespace, warmup: int) -> None:
    print("Delivery: the webhook provider against a bare httpx loop, into one loopback receiver")
    print(f"provider: WebhookProvider.deliver as build_providers makes it (JOURNEYS_WEBHOOK_SECRET "
          f"set, httpx {httpx.__version__}):\n          Content-Type, Idempotency-Key, "
          f"X-Journeys-Signature (HMAC-SHA256), attempt timeout, answer read to 64 KB, Outcome")
    print("bare:     httpx.AsyncClient.post of the same body and Content-Type, same timeout and "
          "pool limits")
    print("logs:     configured as worker.py does (JSON lines, INFO: httpx logs every request), "
          "into /dev/null")
    print("receiver: asyncio HTTP/1.1 server with keep-alive in a subprocess; checks every "
          "signature, answers 200\n          with X-Request-Id")
    print(f"load:     {args.concurrency} in flight, {args.messages} messages a round (~"
          f"{len(messages('http://x', 1, 'x')[0].content['body'])} B bodies); a warm-up of "
          f"{warmup} of each, then {args.delivery_rounds} alternating rounds")
    print("measures: per s = messages / wall time; latency = a message's send call to its answer; "
          "cpu = this\n          process's CPU per message; recv % = the receiver's CPU / wall "
          "time (100 % = its one core busy);\n          conns = connections the receiver accepted "
          "in the round")


def summary(rounds: Sequence[Round], costs: dict[str, float]) -> float:
    """Print the summary; the ratio provider / bare (the median of the rounds' ratios)."""
    provider = [r for r in rounds if r.kind == "provider"]
    bare = [r for r in rounds if r.kind == "bare"]
    ratios = [p.rate / b.rate for p, b in zip(provider, bare, strict=True)]
    ratio = statistics.median(ratios)
    p_med, b_med = statistics.median(r.rate for r in provider), statistics.median(r.rate for r in bare)

    def lat(kind: Sequence[Round], q: float) -> float:
        return 1000 * percentile([x for r in kind for x in r.latencies], q)

    def cpu(kind: Sequence[Round]) -> float:
        return 1e6 * sum(r.cpu for r in kind) / sum(r.messages for r in kind)

    def busy(kind: Sequence[Round]) -> float:
        return max(r.receiver_cpu / r.seconds for r in kind)

    print(f"Summary: delivery, {len(provider)} alternating rounds of {provider[0].messages} "
          f"messages of each kind, medians")
    print(f"  webhook provider: {p_med:.0f} messages/s, latency p50 {lat(provider, 50):.1f} ms, "
          f"p99 {lat(provider, 99):.1f} ms, {cpu(provider):.0f} µs CPU a message")
    print(f"  bare httpx:       {b_med:.0f} messages/s, latency p50 {lat(bare, 50):.1f} ms, "
          f"p99 {lat(bare, 99):.1f} ms, {cpu(bare):.0f} µs CPU a message")
    verdict = "notably slower than bare" if ratio < NOTABLE_RATIO else "close to bare"
    print(f"  ratio provider / bare: {ratio:.2f} (median of the rounds' ratios, "
          f"{min(ratios):.2f} to {max(ratios):.2f}; ratio of the medians {p_med / b_med:.2f}): "
          f"{verdict}")
    print(f"  before the network, a message (one at a time): render the request "
          f"{costs['render']:.0f} µs, of which the HMAC {costs['sign']:.0f} µs; render + httpx "
          f"build_request {costs['build provider']:.0f} µs (bare's build_request "
          f"{costs['build bare']:.0f} µs)")
    print(f"  the receiver was never the limit: at most {busy(provider):.0%} of its core busy "
          f"(provider rounds), {busy(bare):.0%} (bare rounds)")
    return ratio


# --- a whole run ------------------------------------------------------------------------------

async def measure(args: argparse.Namespace) -> int:
    """The delivery figure: print the rounds and the summary; 1 if any message failed."""
    warmup = max(50, args.messages // 4)
    describe(args, warmup)
    with open(os.devnull, "w") as sink, scratch_store("journeys-bench-delivery-") as (store, _), \
            receiver() as recv:
        configure_logging(sink)  # as worker.py: httpx logs each request (INFO), as JSON lines
        settings = Settings(_env_file=None, JOURNEYS_WEBHOOK_SECRET=SECRET,
                            JOURNEYS_EGRESS_ALLOW=LOOPBACK)  # the receiver is on loopback
        provider = build_providers(settings, store)[Channel.webhook]
        assert isinstance(provider, WebhookProvider)
        setup = Setup(provider, recv, args.concurrency, settings.send_timeout)
        try:
            ROUNDS.header()
            await setup.run("provider", "warm-up", warmup)
            await setup.run("bare", "warm-up", warmup)
            rounds: list[Round] = []
            for r in range(args.delivery_rounds):
                order = ("provider", "bare") if r % 2 else ("bare", "provider")
                for kind in order:
                    rounds.append(await setup.run(kind, f"round {r + 1}", args.messages))
            if getattr(args, "profile", False):
                await profile_round(setup, args.messages)
            costs = header_costs(provider, recv.url, min(args.messages, 2000))
            summary(rounds, costs)
            stats = await setup.stats()
        finally:
            await setup.aclose()
    if stats["bad"] or stats["signed"] < sum(r.messages for r in rounds if r.kind == "provider"):
        print(f"FAILED: the receiver refused {stats['bad']} signatures")
        return 1
    failures = sum(r.failures for r in rounds)
    if failures:
        print(f"FAILED: {failures} messages not delivered")
    return 1 if failures else 0


async def profile_round(setup: Setup, n: int) -> None:
    """One more provider round under cProfile (slower so): where the bench process's time goes."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        await setup.run("provider", "profiled", n)
    finally:
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    print(out.getvalue())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("delivery (webhook provider against bare httpx)")
    group.add_argument("--messages", type=int, default=1000, help="messages per delivery round")
    group.add_argument("--concurrency", type=int, default=50, help="requests in flight")
    group.add_argument("--delivery-rounds", type=int, default=3, metavar="R",
                       help="alternating rounds of each kind (0: no delivery figure)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = script_parser("python -m scripts.bench_delivery", __doc__)
    add_arguments(parser)
    parser.add_argument("--profile", action="store_true",
                        help="one more provider round under cProfile, its top functions printed")
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.messages < 1 or args.concurrency < 1 or args.delivery_rounds < 1:
        parser.error("--messages, --concurrency and --delivery-rounds must be at least 1")
    return args


async def main(args: argparse.Namespace) -> int:
    print(machine())
    return await measure(args)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.receiver:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_receiver())
        sys.exit(0)
    run_script(main(arguments))
