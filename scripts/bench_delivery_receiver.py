"""The delivery benchmark's receiver: a small asyncio HTTP/1.1 server with keep-alive, in a
subprocess of its own (``python -m scripts.bench_delivery --receiver``, its own core), which checks
every signature it is sent (401 if wrong) and answers 200 with an ``X-Request-Id``; ``GET /stats``
tells what it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from scripts.common import cpu_seconds, parent_gone

SECRET = "bench-webhook-secret"


# --- the receiver (runs in a subprocess: python -m scripts.bench_delivery --receiver) -----------

class _Stats:
    requests = 0
    signed = 0
    bad = 0
    connections = 0


class _Responder(asyncio.Protocol):
    """HTTP/1.1 with keep-alive: a request at a time per connection, Content-Length bodies."""

    def __init__(self, secret: bytes, stats: _Stats) -> None:
        self.secret = secret
        self.stats = stats
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.stats.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).split(b"\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            total = end + 4 + int(headers.get(b"content-length", b"0"))
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4:total])
            del self.buffer[:total]
            self._answer(lines[0], headers, body)

    def _answer(self, start: bytes, headers: dict[bytes, bytes], body: bytes) -> None:
        assert self.transport is not None
        stats = self.stats
        if start.split(b" ")[1] == b"/stats":
            reply = json.dumps({"requests": stats.requests, "signed": stats.signed,
                                "bad": stats.bad, "connections": stats.connections}).encode()
            status = b"200 OK"
        else:
            stats.requests += 1
            status, reply = b"200 OK", b'{"ok":true}'
            header = headers.get(b"x-journeys-signature")
            if header is not None:
                stats.signed += 1
                t, _, v1 = header.partition(b",")
                t = t.removeprefix(b"t=")
                mac = hmac.new(self.secret, t + b"." + body, hashlib.sha256).hexdigest().encode()
                if not hmac.compare_digest(mac, v1.removeprefix(b"v1=")) or \
                        abs(time.time() - int(t)) > 300 or b"idempotency-key" not in headers:
                    stats.bad += 1
                    status, reply = b"401 Unauthorized", b"bad signature"
        self.transport.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                             b"X-Request-Id: req-%d\r\nContent-Length: %d\r\n\r\n"
                             % (stats.requests, len(reply)) + reply)
        if headers.get(b"connection", b"").lower() == b"close":
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve_receiver() -> None:
    stats = _Stats()
    secret = os.environ["JOURNEYS_WEBHOOK_SECRET"].encode()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Responder(secret, stats), "127.0.0.1", 0,
                                      backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await parent_gone()  # stdin: a pipe from the bench, closed when it goes


@dataclass
class Receiver:
    process: subprocess.Popen[str]
    url: str

    def cpu(self) -> float:
        """The receiver's CPU seconds so far, from /proc."""
        return cpu_seconds(self.process.pid)


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    env = {**os.environ, "JOURNEYS_WEBHOOK_SECRET": SECRET}
    process = subprocess.Popen([sys.executable, "-m", "scripts.bench_delivery", "--receiver"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield Receiver(process, f"http://127.0.0.1:{port}")
    finally:
        process.kill()
        process.wait()
