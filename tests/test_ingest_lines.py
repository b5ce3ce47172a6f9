"""``starter.py ingest`` reading its file (issue 15, case 3; the ``ingest -`` minor): a line that
is no UTF-8, holds a lone surrogate or is over the length limit is refused with its number and
the lines before and after it are routed; a BOM is accepted; a long line is never held whole;
``tail -f | ingest -`` routes each line as it comes. The dev server, the real CLI."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from ingestion.lines import MAX_LINE_BYTES, read_lines
from journeys.ingest import BadLine
from tests.helpers.support import ROOT, dev_server, eventually, parked_catalog

QUEUE = "journeys-lines"


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return parked_catalog(tmp_path_factory.mktemp("catalog"), "hello", "Signed Up")


def _ingest(env: WorkflowEnvironment, data_dir: Path, catalog: Path, *args: str,
            stdin: int | None = None) -> subprocess.Popen[bytes]:
    variables = {**os.environ, "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                 "JOURNEYS_DATA_DIR": str(data_dir), "JOURNEYS_TASK_QUEUE": QUEUE}
    return subprocess.Popen([sys.executable, "starter.py", "ingest", *args, "--journeys", str(catalog)],
                            cwd=ROOT, env=variables, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _line(user: str, **more: object) -> bytes:
    return json.dumps({"userId": user, "event": "Signed Up", **more}).encode()


async def _running(env: WorkflowEnvironment, user: str) -> bool:
    try:
        description = await env.client.get_workflow_handle(f"journey/hello/{user}").describe()
    except RPCError:
        return False
    return description.status == WorkflowExecutionStatus.RUNNING


async def test_bad_lines_are_refused_by_number_and_the_rest_is_routed(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path, tmp_path: Path) -> None:
    lines = [
        b"\xef\xbb\xbf" + _line("bom-1"),  # a BOM, as editors on Windows write
        b'{"userId": "caf\xe9-2", "event": "Signed Up"}',  # Latin-1, not UTF-8
        _line("ok-3"),
        b'{"userId": "cut-4", "event": "Signed Up", "properties": {"t": "\\ud83d"}}',
        b'{"userId": "ctx-5", "event": "Signed Up", "context": {"page": "\\udc00"}}',
        b'{"userId": "\\ud83d", "event": "Signed Up", "messageId": "m-6"}',
        _line("big-7", properties={"s": "x" * (MAX_LINE_BYTES + 10)}),
        b"\xff\xfe{",
        _line("ok-9"),
    ]
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines))  # no break after the last line: it counts all the same
    done = await asyncio.to_thread(_ingest(env, data_dir, catalog, str(path)).communicate, timeout=60)
    out, err = done[0].decode(), done[1].decode()
    assert "Traceback" not in err, err
    refused = [line for line in err.splitlines() if line.startswith("refused")]
    assert refused, (out, err)
    assert [r.split(":")[0] for r in refused] == [
        "refused  line 2", "refused  line 4", "refused  line 5", "refused  line 6", "refused  line 7",
        "refused  line 8"]
    assert "not UTF-8: byte 0xe9" in refused[0] and "properties.t: a lone UTF-16 surrogate" in refused[1]
    assert "context.page: a lone" in refused[2] and "userId: a lone" in refused[3]
    assert f"over {MAX_LINE_BYTES} bytes" in refused[4] and "not UTF-8: byte 0xff" in refused[5]
    assert out.strip() == "read 9, started 3, signalled 0, ignored 0, refused 6, failed 0"
    for user in ("bom-1", "ok-3", "ok-9"):
        assert await _running(env, user), user


async def test_a_segment_export_s_page_screen_and_anonymous_calls_are_skipped_not_refused(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path, tmp_path: Path) -> None:
    """As the HTTP API does: calls no journey routes are counted skipped, and ingest exits 0."""
    lines = [
        json.dumps({"type": "page", "userId": "pg-1", "name": "Home"}).encode(),
        json.dumps({"type": "screen", "userId": "sc-2", "name": "Cart"}).encode(),
        json.dumps({"type": "alias", "userId": "al-3", "previousId": "x"}).encode(),
        json.dumps({"type": "group", "userId": "gr-4", "groupId": "g"}).encode(),
        json.dumps({"type": "track", "anonymousId": "anon-5", "event": "Signed Up"}).encode(),
        _line("seg-6", type="track"),
        _line("seg-7"),
    ]
    path = tmp_path / "export.ndjson"
    path.write_bytes(b"\n".join(lines))
    process = _ingest(env, data_dir, catalog, str(path))
    out, err = await asyncio.to_thread(process.communicate, timeout=60)
    assert process.returncode == 0, (out, err)
    assert out.decode().strip() == ("read 7, started 2, signalled 0, ignored 0, skipped 5 (page, "
                                    "screen, alias, group, anonymous), refused 0, failed 0"), err
    for user in ("seg-6", "seg-7"):
        assert await _running(env, user), user


async def test_ingest_from_a_pipe_routes_each_line_as_it_comes(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path) -> None:
    process = _ingest(env, data_dir, catalog, "-", stdin=subprocess.PIPE)
    assert process.stdin is not None
    try:
        for user in ("tail-1", "tail-2"):  # one line, and the pipe stays open (tail -f)
            process.stdin.write(_line(user) + b"\n")
            process.stdin.flush()
            assert await eventually(functools.partial(_running, env, user), timeout=30), user
    finally:
        process.stdin.close()
        assert process.stdout is not None
        out = await asyncio.to_thread(process.stdout.read)
        await asyncio.to_thread(process.wait, 60)
    assert out.decode().strip().startswith("read 2, started 2")


async def test_a_long_line_is_never_held_whole() -> None:
    """50 MB on one line through a pipe: refused, and the reader holds a bounded amount."""
    read_fd, write_fd = os.pipe()

    def write() -> None:
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(b'{"userId": "a", "event": "X", "properties": {"s": "')
            for _ in range(50):
                pipe.write(b"x" * 1024 * 1024)
            pipe.write(b'"}}\n' + _line("after") + b"\n")

    writer = threading.Thread(target=write)
    writer.start()
    tracemalloc.start()
    try:
        with os.fdopen(read_fd, "rb") as stream:
            got = [item async for item in read_lines(stream)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        writer.join()
    assert [number for number, _ in got] == [1, 2]
    assert isinstance(got[0][1], BadLine) and got[1][1] == _line("after")
    assert peak < 4 * MAX_LINE_BYTES, peak  # not the 50 MB line (nor copies of it)
