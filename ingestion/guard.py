"""The HTTP API's own guard against slow and many clients, for when no proxy stands in front.

uvicorn waits forever for a request's headers (its keep-alive timer stops at the first byte)
and accepts connections until the process runs out of file descriptors, logging a traceback
for each accept that fails. Here:

- a connection has ``JOURNEYS_HTTP_HEADER_SECONDS`` to send each request's headers, and may
  stay idle between requests as long (then it is closed);
- at most ``JOURNEYS_HTTP_MAX_CONNECTIONS`` are held: one more pushes out the oldest one that
  is idle or still sending its headers (a real client sends its headers in one packet, a slow
  one keeps trickling them), so new clients, ``/health`` among them, still get in;
- a request's body has ``JOURNEYS_HTTP_BODY_SECONDS`` (ingestion/requests.py: 408);
- an accept that fails for want of file descriptors is logged once per interval, with a count.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from journeys.settings import Settings

log = logging.getLogger("journeys.http")

#: The request line and headers together, as h11 buffers them before a request starts.
MAX_HEADER_BYTES = 16 * 1024
#: How often, at most, a failing accept (out of file descriptors) is logged.
ACCEPT_LOG_SECONDS = 10.0


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap (the class attributes,
    set for the settings by :func:`api_config`)."""

    max_connections = 1000
    header_seconds = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._wait_for_headers(True)
        if len(self.connections) > self.max_connections:
            oldest = next(iter(_waiting(self.server_state)))  # self at the latest
            oldest._wait_for_headers(False)
            oldest.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._wait_for_headers(False)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:  # a request began
            self._wait_for_headers(False)

    def on_response_complete(self) -> None:
        self._wait_for_headers(True)  # idle until the next request: the same deadline
        super().on_response_complete()  # (a pipelined request starts here, and disarms it)

    def _wait_for_headers(self, waiting: bool) -> None:
        queue = _waiting(self.server_state)
        queue.pop(self, None)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if waiting and not self.transport.is_closing():
            queue[self] = None  # at the end: the newest
            self._deadline = self.loop.call_later(self.header_seconds, self.transport.close)


def _waiting(state: ServerState) -> dict[GuardedH11, None]:
    """The server's connections between requests, oldest first."""
    queue: dict[GuardedH11, None] | None = getattr(state, "journeys_waiting", None)
    if queue is None:
        queue = {}
        state.journeys_waiting = queue  # type: ignore[attr-defined]
    return queue


def api_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn's config for the API: the guard above with the settings' limits, header bytes
    bounded, and uvicorn's loggers left to the process's (JSON) logging."""
    protocol = type("GuardedH11", (GuardedH11,), {
        "max_connections": connection_cap(settings.http_max_connections),
        "header_seconds": settings.http_header_seconds})
    quiet_accept_failures()
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # as uvicorn's own config left them
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    options.setdefault("log_level", "warning")
    return uvicorn.Config(app, http=protocol, h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                          timeout_keep_alive=max(1, int(settings.http_header_seconds)),
                          log_config=None, **options)


def connection_cap(setting: int) -> int:
    """``setting``, or less: the process's file limit less a reserve for everything else (the
    store, the Temporal client, a worker's outbound calls). An accept that fails for want of
    file descriptors makes asyncio retry once more for each failure (a storm of timers and
    CPU), so the cap keeps the API from ever getting there on its own."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return setting
    room = max(2, soft - max(64, soft // 4))
    if room < setting:
        log.info("HTTP API: at most %d connections (file limit %d; raise it with ulimit -n)", room, soft)
    return min(setting, room)


class _AcceptFailures(logging.Filter):
    """asyncio's "socket.accept() out of system resource" (with its traceback), once per interval
    and with the number of failures since; other records pass."""

    def __init__(self, interval: float = ACCEPT_LOG_SECONDS) -> None:
        super().__init__()
        self.interval, self.last, self.count = interval, float("-inf"), 0

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith("Exception in callback BaseSelectorEventLoop._start_serving"):
            return False  # asyncio's retries of those accepts, once the socket is closed
        if not message.startswith("socket.accept() out of system resource"):
            return True
        self.count += 1
        now = time.monotonic()
        if now - self.last < self.interval:
            return False
        error = record.exc_info[1] if record.exc_info else None
        record.msg = (f"the HTTP API cannot accept connections ({error or 'out of resources'}): "
                      f"{self.count} failure(s) since the last report; raise the file limit "
                      "(ulimit -n) or lower JOURNEYS_HTTP_MAX_CONNECTIONS")
        record.args, record.exc_info, record.exc_text = (), None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        self.last, self.count = now, 0
        return True


def quiet_accept_failures() -> None:
    """Put the filter on asyncio's logger (once per process)."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _AcceptFailures) for f in logger.filters):
        logger.addFilter(_AcceptFailures())
