"""One dev server per data dir, and none left behind: `worker.py --dev` killed, doubled, restarted.

Real processes (`python worker.py --dev --no-ui` and `temporal server start-dev`) on free ports in
temporary data dirs; every server a test starts is stopped, even when the test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.devserver import PID_FILE, stop_stale_server
from service.runtime import binary
from tests.helpers.processes import WorkerProcess, temporal_servers
from tests.helpers.support import free_port

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG and /proc are Linux's")


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir whose servers are all killed at the end, whatever the test did."""
    path = tmp_path / "data"
    yield path
    for pid in temporal_servers(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def _until_gone(data_dir: Path, timeout: float) -> float:
    """Seconds until no server runs on ``data_dir`` (AssertionError after ``timeout``)."""
    started = time.monotonic()
    while temporal_servers(data_dir):
        assert time.monotonic() - started < timeout, f"server still running after {timeout}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _until_serving(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await asyncio.to_thread(socket.create_connection, ("127.0.0.1", port), 1.0)
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing serves on port {port} after {timeout}s"
            await asyncio.sleep(0.1)


async def test_a_sigkilled_worker_takes_its_server_along_and_a_restart_works(data_dir: Path) -> None:
    port = free_port()
    first = WorkerProcess(data_dir, port, "first")
    try:
        await first.ready()
        assert len(temporal_servers(data_dir)) == 1
        first.process.kill()  # SIGKILL: no handler, no cleanup of ours runs
        first.process.wait()
        print(f"server gone {await _until_gone(data_dir, 8.0):.2f}s after the worker's SIGKILL")
    finally:
        first.kill()
    second = WorkerProcess(data_dir, port, "second")  # the same data dir and ports
    try:
        await second.ready()
        [server] = temporal_servers(data_dir)
        assert json.loads((data_dir / PID_FILE).read_text())["pid"] == server
        assert await second.stop(signal.SIGTERM) == 0, second.output()
        assert temporal_servers(data_dir) == [] and not (data_dir / PID_FILE).exists()
    finally:
        second.kill()


async def test_a_stale_server_of_the_data_dir_is_stopped_before_a_start(data_dir: Path) -> None:
    """As if PR_SET_PDEATHSIG had not fired (another OS; the server ignored it): the pid file is left.

    Started without our search attributes, as by hand or by an older release: they get registered.
    """
    port = free_port()
    data_dir.mkdir()
    db = str((data_dir / "temporal.db").resolve())
    stale = subprocess.Popen(
        [binary("temporal"), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless",
         "--db-filename", db, "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    worker: WorkerProcess | None = None
    try:
        await _until_serving(port, 20.0)
        (data_dir / PID_FILE).write_text(json.dumps({"pid": stale.pid, "db": db}))
        worker = WorkerProcess(data_dir, port, "worker")
        await worker.ready(timeout=40)
        assert stale.poll() is not None, "the stale server still runs"
        [line] = [json.loads(line) for line in worker.err.read_text().splitlines()
                  if '"stale dev server stopped"' in line]
        assert line["pid"] == stale.pid
        print(f"stale server stopped in {line['seconds']}s")
        assert await worker.stop(signal.SIGTERM) == 0, worker.output()
    finally:
        if worker:
            worker.kill()
        stale.kill()
        stale.wait()


async def test_a_pid_file_naming_another_process_is_left_alone(data_dir: Path) -> None:
    """A reused pid, or a server on another database, is never killed; the pid file is dropped."""
    data_dir.mkdir()
    db = str((data_dir / "temporal.db").resolve())
    other = subprocess.Popen(["sleep", "30"])
    try:
        for record in ({"pid": other.pid, "db": db}, {"pid": other.pid, "db": "/elsewhere/temporal.db"},
                       {"pid": "not a pid"}):
            (data_dir / PID_FILE).write_text(json.dumps(record))
            assert await stop_stale_server(data_dir, db) is None
            assert other.poll() is None and not (data_dir / PID_FILE).exists()
    finally:
        other.kill()
        other.wait()


async def test_a_second_worker_on_the_data_dir_exits_2_and_starts_no_server(data_dir: Path) -> None:
    first = WorkerProcess(data_dir, free_port(), "first")
    second_port = free_port()
    try:
        await first.ready()
        [server] = temporal_servers(data_dir)
        second = WorkerProcess(data_dir, second_port, "second")
        try:
            code = await asyncio.to_thread(second.process.wait, 30)
        finally:
            second.kill()
        err = second.err.read_text()
        assert code == 2, second.output()
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith(f"error: JOURNEYS_DATA_DIR: '{data_dir}' is in use by another "
                              f"`worker.py --dev` (pid {first.process.pid})"), err
        assert temporal_servers(data_dir) == [server]
        assert json.loads((data_dir / PID_FILE).read_text())["pid"] == server
        assert await first.stop(signal.SIGTERM) == 0, first.output()  # still running, still stops cleanly
    finally:
        first.kill()
