"""Slow and many clients (issue 15, case 5): a connection that trickles its headers or its body is
closed or answered 408 in bounded time; past the connection cap the oldest idle or slow one
makes room, so ``/health`` answers while slow connections would exhaust the file descriptors;
an accept that fails for want of them is one JSON line per interval, not a traceback each.
Real sockets on loopback against ``starter.py serve`` (its file limit lowered) and the app."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from journeys.settings import Settings
from tests.helpers.serving import serving
from tests.helpers.support import ROOT, dev_server, free_port, parked_catalog

QUEUE = "journeys-http-slow"
#: The file limit of the served process: far fewer than the slow connections opened.
FILE_LIMIT = 160
SLOW = 400
SLOW_HEAD = b"POST /v1/track HTTP/1.1\r\nHost: x\r\n"  # and never the rest


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return parked_catalog(tmp_path_factory.mktemp("catalog"), "cart", "Added To Cart")


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


def _serve(env: WorkflowEnvironment, data_dir: Path, catalog: Path, port: int,
           **environ: str) -> subprocess.Popen[str]:
    variables = {**os.environ, "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                 "JOURNEYS_DATA_DIR": str(data_dir), "JOURNEYS_TASK_QUEUE": QUEUE,
                 "JOURNEYS_WRITE_KEY": "", **environ}
    return subprocess.Popen(
        [sys.executable, "starter.py", "serve", "--port", str(port), "--journeys", str(catalog)],
        cwd=ROOT, env=variables, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        preexec_fn=_limited)


def _health(url: str, tries: int = 200) -> int | None:
    """/health's status, once it answers (None if it never did)."""
    for _ in range(tries):
        try:
            return httpx.get(f"{url}/health", timeout=5).status_code
        except httpx.TransportError:
            time.sleep(0.1)
    return None


def _slow(port: int, count: int, stack: ExitStack) -> None:
    for _ in range(count):
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        sock.sendall(SLOW_HEAD)


def _stopped(process: subprocess.Popen[str]) -> str:
    process.terminate()
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err


def test_health_answers_while_slow_connections_would_exhaust_the_file_limit(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _serve(env, data_dir, catalog, port, JOURNEYS_HTTP_MAX_CONNECTIONS="60")
    try:
        assert _health(url) == 200
        with ExitStack() as stack:
            _slow(port, SLOW, stack)  # more than the process has file descriptors
            for _ in range(5):
                assert httpx.get(f"{url}/health", timeout=10).status_code == 200
            response = httpx.post(f"{url}/v1/track", json={"userId": "u", "event": "Nothing"},
                                  timeout=10)
            assert response.status_code == 200, response.text
    finally:
        err = _stopped(process)
    assert "Traceback" not in err, err[-3000:]
    for line in err.splitlines():  # uvicorn's lines are JSON too, without colour codes
        assert "\x1b" not in json.loads(line)["event"] and "color_message" not in line


#: A server on asyncio's own accept loop (uvicorn's), with the process's logging and the filter.
ACCEPTING = """
import asyncio, sys
from ingestion.guard import quiet_accept_failures
from telemetry.logs import configure_logging
configure_logging()
quiet_accept_failures()
held = []
async def main():
    async def hold(reader, writer):
        held.append(writer)
    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(4)
    server.close()
asyncio.run(main())
"""


def test_an_accept_that_fails_is_logged_once_per_interval_as_json() -> None:
    """Past the file limit accepts fail (asyncio retries each one more time every second): one
    JSON line with a count per interval, not a traceback each."""
    process = subprocess.Popen([sys.executable, "-c", ACCEPTING], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_limited)
    assert process.stdout is not None
    port = int(process.stdout.readline())
    with ExitStack() as stack:
        with contextlib.suppress(OSError):  # the listen backlog full: refused, and that is all
            _slow(port, FILE_LIMIT + 100, stack)
        _, err = process.communicate(timeout=60)
    lines = err.splitlines()
    assert len(lines) == 1, err[-3000:]  # 4 s of failures, within one interval
    failure = json.loads(lines[0])
    assert failure["level"] == "warning" and "exception" not in failure
    assert failure["event"].startswith("the HTTP API cannot accept connections ([Errno 24] Too many")


@pytest.fixture(scope="module")
def tight(env: WorkflowEnvironment, data_dir: Path, catalog: Path) -> Iterator[str]:
    settings = Settings(TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
                        JOURNEYS_TASK_QUEUE=QUEUE, JOURNEYS_DATA_DIR=data_dir, JOURNEYS_DIR=catalog,
                        JOURNEYS_HTTP_HEADER_SECONDS=1, JOURNEYS_HTTP_BODY_SECONDS=1)
    with serving(settings) as url:
        yield url


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize("first", [
    b"", b"POST /v1/track HTTP/1.1\r\n", b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"])
async def test_a_connection_that_trickles_its_headers_is_closed(tight: str, first: bytes) -> None:
    """Nothing sent, headers a byte at a time, or idle after a request: closed all the same."""
    with socket.create_connection(("127.0.0.1", _port(tight)), timeout=30) as sock:
        sock.sendall(first)
        closed = False
        for _ in range(200):  # a byte every 0.1 s, for up to 20 s
            try:
                sock.sendall(b"X")
            except OSError:
                closed = True
                break
            await asyncio.sleep(0.1)
        if not closed:
            sock.settimeout(0.1)
            data = b""
            try:
                while more := sock.recv(65536):
                    data += more
                closed = True
            except TimeoutError:
                pass
        assert closed


async def test_a_body_slower_than_its_time_is_a_408(tight: str) -> None:
    with socket.create_connection(("127.0.0.1", _port(tight)), timeout=30) as sock:
        sock.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"userId\"")
        answer = b""
        while b"\r\n\r\n" not in answer and (more := sock.recv(65536)):
            answer += more
    assert answer.startswith(b"HTTP/1.1 408"), answer


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


async def test_a_client_that_leaves_mid_body_is_no_error(tight: str) -> None:
    """A client gone before its body's end: answered (to nobody), never a traceback."""
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    try:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", _port(tight)), timeout=30) as sock:
                sock.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100\r\n\r\n{\"userId\"")
                await asyncio.sleep(0.2)
        async with httpx.AsyncClient() as http:  # after them, a request is answered as ever
            assert (await http.get(f"{tight}/health")).status_code == 200
        await asyncio.sleep(0.5)
    finally:
        logging.getLogger().removeHandler(errors)
    assert errors.seen == []
