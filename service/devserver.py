"""The embedded ``temporal server start-dev`` of ``worker.py --dev``: one per data dir, never orphaned.

* The data dir is locked (``flock`` on ``<data dir>/worker.lock``) for as long as the worker runs,
  so a second worker on it stops with a one-line error instead of sharing ``temporal.db``.
* On Linux the server gets PR_SET_PDEATHSIG: it is sent SIGTERM when the worker dies, even by
  SIGKILL or the OOM killer.
* ``<data dir>/temporal.pid`` records the server; a worker that finds one from a dead worker stops
  that server (after checking ``/proc/<pid>/cmdline`` names our ``temporal.db``) before starting.

Not workflow code: imported by ``worker.py`` and the tests, never by a workflow.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import json
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import structlog
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

from connection import address_of, namespace_of
from journeys.language.problems import UsageError
from journeys.settings import Settings
from service.runtime import binary, connect
from workflows.models import SEARCH_ATTRIBUTES

log = structlog.get_logger("worker")
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")  # ~2x the throughput of the defaults
LOCK_FILE, PID_FILE, DB_FILE = "worker.lock", "temporal.pid", "temporal.db"
KEYWORD = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Loaded before any fork: the child between fork and exec should not have to load a library.
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


class StartupError(RuntimeError):
    """The worker cannot start: Temporal is unreachable, or the dev server did not come up."""


class DevServerError(StartupError):
    """The dev server did not come up: its port is taken, it exited, or it never answered."""


class DataDirLock:
    """An exclusive lock on a data dir for the dev server; a UsageError if busy or unwritable.

    ``flock`` is released by the kernel when the holder dies, however it dies; the descriptor is
    close-on-exec, so the server child does not hold it on after the worker.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        path = data_dir / LOCK_FILE
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(f"JOURNEYS_DATA_DIR: cannot write '{path}': {exc.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            self.release()
            raise UsageError(f"JOURNEYS_DATA_DIR: '{data_dir}' is in use by another `worker.py --dev` "
                             f"(pid {holder}); give each worker its own data dir") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)  # for the message above, in the next one
        db = data_dir / DB_FILE
        try:  # the server would only say so in its log, after we started it
            if db.exists():
                os.close(os.open(db, os.O_RDWR))
        except OSError as exc:
            self.release()
            raise UsageError(f"JOURNEYS_DATA_DIR: cannot write '{db}': {exc.strerror}") from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # and with it the lock
            self._fd = None


@dataclass
class DevServer:
    """A running ``temporal server start-dev``: where it listens, and how to stop it."""

    process: asyncio.subprocess.Process
    address: str
    ui_url: str | None
    db_path: str
    pid_file: Path
    lock: DataDirLock | None = None  # released on stop() when start_dev_server took it
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    _reader: asyncio.Task[None] | None = None

    async def stop(self, timeout: float = 10.0) -> int:
        """Terminate the server (SIGTERM, SIGKILL after ``timeout``); returns its exit status."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader:
            await self._reader
        self.pid_file.unlink(missing_ok=True)
        if self.lock:
            self.lock.release()
        return self.process.returncode if self.process.returncode is not None else -1

    async def _forward_stderr(self) -> None:
        """The server's own (error-level, JSON) log goes to our stderr; its tail is kept."""
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.stderr_tail.append(line)
            print(line, file=sys.stderr, flush=True)


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "localhost", int(port)


async def _port_taken(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when its parent dies (None elsewhere).

    The kernel sends it when the *thread* that forked exits, so only a fork from the main thread
    (asyncio.run's loop, where the subprocess is forked) lives as long as the process.
    """
    if _libc is None or threading.current_thread() is not threading.main_thread():
        return None
    libc = _libc

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody would send it
            os._exit(1)
    return preexec


def _is_our_server(pid: int, db_path: str) -> bool:
    """Whether ``pid`` is a live ``temporal server start-dev`` on ``db_path`` (Linux only)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    if stat.rpartition(")")[2].split()[0] in ("Z", "X"):  # exited, not yet reaped
        return False
    return (pid > 1 and pid != os.getpid() and Path(args[0]).name == "temporal"
            and args[1:3] == ["server", "start-dev"]
            and any(args[i:i + 2] == ["--db-filename", db_path] for i in range(len(args))))


async def stop_stale_server(data_dir: Path, db_path: str, timeout: float = 10.0) -> int | None:
    """Stop the server a dead worker left on ``db_path`` (its pid file says which); its pid, or None.

    Call with the data dir locked: then no live worker owns that server. A pid that is not a
    ``temporal server start-dev`` on our database (the pid was reused) is left alone.
    """
    pid_file = data_dir / PID_FILE
    try:
        record = json.loads(pid_file.read_text())
        pid = int(record["pid"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        pid_file.unlink(missing_ok=True)
        return None
    if record.get("db") != db_path or not _is_our_server(pid, db_path):
        pid_file.unlink(missing_ok=True)
        return None
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        except PermissionError:
            raise DevServerError(f"the stale dev server {pid} on {db_path} is another user's: "
                                 "stop it, then start again") from None
        deadline = time.monotonic() + wait
        while _is_our_server(pid, db_path) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not _is_our_server(pid, db_path):
            break
    else:
        raise DevServerError(f"the stale dev server {pid} on {db_path} survives SIGKILL")
    pid_file.unlink(missing_ok=True)
    return pid


async def start_dev_server(settings: Settings, *, ui: bool = True, timeout: float = 60.0,
                           lock: DataDirLock | None = None) -> DevServer:
    """Start ``temporal server start-dev`` on TEMPORAL_ADDRESS's port and wait until it serves.

    State persists in ``<data dir>/temporal.db``; the journey search attributes are registered.
    ``lock``: the data dir's, held by the caller; without it one is taken for the server's life.
    Raises UsageError if the data dir is busy or unwritable, DevServerError (with the server's
    stderr tail) if the server cannot start.
    """
    host, port = split_address(address_of(settings))
    owned = DataDirLock(settings.data_dir) if lock is None else None
    try:
        db_path = str((settings.data_dir / DB_FILE).resolve())
        started = time.monotonic()
        stale = await stop_stale_server(settings.data_dir, db_path)
        if stale:
            log.warning("stale dev server stopped", pid=stale, db=db_path,
                        seconds=round(time.monotonic() - started, 2))
        if await _port_taken(host, port):
            raise DevServerError(f"{host}:{port} is in use: is another Temporal server running there?")
        args = ["server", "start-dev", "--ip", host, "--port", str(port), "--db-filename", db_path,
                "--log-level", "error", "--log-format", "json"]
        args += [arg for pragma in SQLITE_PRAGMAS for arg in ("--sqlite-pragma", pragma)]
        args += [arg for key in SEARCH_ATTRIBUTES for arg in ("--search-attribute", f"{key.name}=Keyword")]
        # Task-queue priority is on by default; fairness (per journey) is switched on here.
        args += ["--dynamic-config-value", "matching.enableFairness=true"]
        if namespace_of(settings) != "default":
            args += ["--namespace", namespace_of(settings)]
        args += ["--ui-port", str(port + 1000)] if ui else ["--headless"]
        # Its own process group: a Ctrl-C in the terminal reaches only us, and we stop it after the worker.
        process = await asyncio.create_subprocess_exec(
            binary("temporal"), *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, process_group=0,
            preexec_fn=_die_with_parent(os.getpid()))
    except BaseException:
        if owned:
            owned.release()
        raise
    pid_file = settings.data_dir / PID_FILE
    server = DevServer(process, address_of(settings),
                       f"http://{host}:{port + 1000}" if ui else None, db_path, pid_file, owned)
    server._reader = asyncio.create_task(server._forward_stderr())
    try:
        pid_file.with_suffix(".tmp").write_text(json.dumps({"pid": process.pid, "db": db_path}) + "\n")
        pid_file.with_suffix(".tmp").replace(pid_file)
        await _wait_until_serving(server, namespace_of(settings), time.monotonic() + timeout)
    except BaseException:
        await server.stop()
        raise
    return server


async def _wait_until_serving(server: DevServer, namespace: str, deadline: float) -> None:
    """Retry until the namespace answers with our search attributes registered."""
    wanted = {key.name for key in SEARCH_ATTRIBUTES}
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if server.process.returncode is not None:
            await server.stop()
            tail = "\n".join(server.stderr_tail) or "(no output)"
            raise DevServerError(f"temporal server start-dev exited with status "
                                 f"{server.process.returncode}:\n{tail}")
        try:
            client = await connect(server.address, namespace, connect_timeout=timedelta(seconds=2))
            found = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=namespace), timeout=timedelta(seconds=2))
            missing = wanted - set(found.custom_attributes)
            if not missing:
                return
            # --search-attribute registers only in a new database: a temporal.db from before one
            # was added (or from a server started by hand) gets it here.
            await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
                namespace=namespace, search_attributes=dict.fromkeys(missing, KEYWORD)),
                timeout=timedelta(seconds=5))
        except Exception as exc:  # not up yet
            last = exc
        await asyncio.sleep(0.2)
    raise DevServerError(f"the dev server at {server.address} did not answer in time (last error: {last})")
