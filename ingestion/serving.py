"""The HTTP API on uvicorn inside a process that owns its signals: ``worker.py --serve`` (and so
``make run``), where the worker and the API share one event loop and one Temporal client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
import uvicorn
from temporalio.client import Client

from ingestion.guard import api_config
from ingestion.http_api import LOOPBACK, check_bind, create_app
from journeys.language.problems import UsageError
from journeys.numbers import whole_number
from journeys.settings import Settings

log = structlog.get_logger("journeys.http")

#: Where ``--dev`` keeps the write key it made, so it stays the same across restarts.
DEV_KEY_FILE = "dev-write-key"


def host_port(value: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8000`` for IPv6) as a pair, or a usage error naming ``option``."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    number = whole_number(port) if port == port.strip() else None  # ASCII digits only
    if not host or number is None or not 0 < number < 65536:
        raise UsageError(f"{option}: {value!r} is not HOST:PORT")
    return host, number


def api_settings(settings: Settings, host: str, dev: bool) -> Settings:
    """The settings the API runs with. ``--dev`` without ``JOURNEYS_WRITE_KEY`` makes a key of its
    own (kept in the data dir), so the API asks for one from the start, as it will in production."""
    if dev and not settings.write_key:
        settings = settings.model_copy(update={"write_key": dev_write_key(settings.data_dir)})
    check_bind(host, settings.write_key)
    return settings


def dev_write_key(data_dir: Path) -> str:
    """The data dir's development write key, made (readable by its owner only) on first use."""
    path = data_dir / DEV_KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        key = path.read_text().strip()
        if key:
            return key
    data_dir.mkdir(parents=True, exist_ok=True)
    key = f"dev-{secrets.token_urlsafe(12)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
    return key


class _Server(uvicorn.Server):
    """uvicorn without its own SIGINT/SIGTERM handlers: the worker stops it with everything else."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningAPI:
    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        """Finish the requests under way, then stop listening."""
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await self.task


def bind(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound before anything else starts: a taken port is a usage error."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise UsageError(f"--serve: {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or exc
        raise UsageError(f"--serve: cannot serve the HTTP API on {host}:{port}: {reason}") from None
    return sock


async def start_api(client: Client, settings: Settings, sock: socket.socket,
                    show_key: bool = False) -> RunningAPI:
    """Serve the API on ``sock`` (see :func:`bind`) with ``client``; returns once it listens.

    ``show_key`` prints the write key (the development key ``--dev`` made; never a real one).
    """

    async def connected() -> Client:
        return client

    app = create_app(settings, None, connected)
    server = _Server(api_config(app, settings))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    log.info("HTTP API started", url=url, docs=f"{url}/docs", auth="write key" if settings.write_key
             else f"none (loopback only: {', '.join(LOOPBACK)})")
    if not show_key:
        print(f"HTTP API: {url} (docs {url}/docs)", flush=True)
    else:
        print(f"HTTP API: {url} (docs {url}/docs); development write key: {settings.write_key}\n"
              f"  curl -u {settings.write_key}: {url}/v1/track -H 'Content-Type: application/json' "
              """-d '{"userId": "ada", "event": "Added To Cart", "properties": {"price": "$799"}}'""",
              flush=True)
    return RunningAPI(server, task)
