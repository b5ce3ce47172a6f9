"""Run the journey worker; with ``--dev``, an embedded Temporal dev server first.

    python worker.py          # a worker for the cluster at TEMPORAL_ADDRESS
    python worker.py --dev    # plus `temporal server start-dev`, persisted in <data dir>/temporal.db

Settings come from the environment (``journeys.settings.Settings``); Prometheus metrics from the
SDK runtime are served on JOURNEYS_METRICS_ADDRESS (for example ``0.0.0.0:9464``) when it is set.
Ctrl-C or SIGTERM shuts the worker down gracefully, then the dev server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import structlog
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from activities import build_activities
from journeys.logs import configure_logging
from journeys.settings import Settings
from journeys.store import Store
from workflows.models import SEARCH_ATTRIBUTES
from workflows.runtime import binary, connect, journey_worker

log = structlog.get_logger("worker")
T = TypeVar("T")
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")  # ~2x the throughput of the defaults


class StartupError(RuntimeError):
    """The worker cannot start: Temporal is unreachable, or the dev server did not come up."""


class DevServerError(StartupError):
    """The dev server did not come up: its port is taken, it exited, or it never answered."""


@dataclass
class DevServer:
    """A running ``temporal server start-dev``: where it listens, and how to stop it."""

    process: asyncio.subprocess.Process
    address: str
    ui_url: str | None
    db_path: str
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


async def start_dev_server(settings: Settings, *, ui: bool = True, timeout: float = 60.0) -> DevServer:
    """Start ``temporal server start-dev`` on TEMPORAL_ADDRESS's port and wait until it serves.

    State persists in ``<data dir>/temporal.db``; the journey search attributes are registered.
    Raises DevServerError (with the server's stderr tail) if it cannot start.
    """
    host, port = split_address(settings.temporal_address)
    if await _port_taken(host, port):
        raise DevServerError(f"{host}:{port} is in use: is another Temporal server running there?")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db_path = str((settings.data_dir / "temporal.db").resolve())
    args = ["server", "start-dev", "--ip", host, "--port", str(port), "--db-filename", db_path,
            "--log-level", "error", "--log-format", "json"]
    args += [arg for pragma in SQLITE_PRAGMAS for arg in ("--sqlite-pragma", pragma)]
    args += [arg for key in SEARCH_ATTRIBUTES for arg in ("--search-attribute", f"{key.name}=Keyword")]
    if settings.temporal_namespace != "default":
        args += ["--namespace", settings.temporal_namespace]
    args += ["--ui-port", str(port + 1000)] if ui else ["--headless"]
    # Its own process group: a Ctrl-C in the terminal reaches only us, and we stop it after the worker.
    process = await asyncio.create_subprocess_exec(
        binary("temporal"), *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, process_group=0)
    server = DevServer(process, settings.temporal_address,
                       f"http://{host}:{port + 1000}" if ui else None, db_path)
    server._reader = asyncio.create_task(server._forward_stderr())
    try:
        await _wait_until_serving(server, settings.temporal_namespace, time.monotonic() + timeout)
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
            if wanted <= set(found.custom_attributes):
                return
        except Exception as exc:  # not up yet
            last = exc
        await asyncio.sleep(0.2)
    raise DevServerError(f"the dev server at {server.address} did not answer in time (last error: {last})")


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """``work``'s result, or None (and ``work`` cancelled) if ``stop`` is set first."""
    task, stopped = asyncio.ensure_future(work), asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    return task.result()


async def run_worker(settings: Settings, *, dev: bool, ui: bool = True, metrics_address: str | None = None,
                     stop: asyncio.Event | None = None, activity_threads: int = 16) -> int:
    """Run the worker (``dev``: the dev server first) until ``stop`` is set (default: SIGINT or
    SIGTERM); returns an exit status. SDK metrics for Prometheus are served on ``metrics_address``."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if stop is None else ()
    stop = stop or asyncio.Event()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    server: DevServer | None = None
    try:
        if dev:
            started = time.monotonic()
            server = await _unless_stopped(start_dev_server(settings, ui=ui), stop)
            if server is None:
                return 0
            log.info("dev server started", address=server.address, ui_url=server.ui_url,
                     db=server.db_path, seconds=round(time.monotonic() - started, 2))
            if server.ui_url:
                print(f"Temporal UI: {server.ui_url}", flush=True)
        runtime = (Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=metrics_address)))
                   if metrics_address else None)
        try:
            client = await _unless_stopped(connect(settings.temporal_address, settings.temporal_namespace,
                                                   runtime=runtime), stop)
        except RuntimeError as exc:
            raise StartupError(f"cannot reach Temporal at {settings.temporal_address} (is it running? "
                               f"`python worker.py --dev` starts one): {exc}") from None
        return 0 if client is None else await _serve(client, settings, stop, server, activity_threads,
                                                     metrics_address)
    finally:
        if server:
            log.info("dev server stopped", status=await server.stop())
        for sig in signals:
            loop.remove_signal_handler(sig)
        log.info("shutdown complete")


async def _serve(client: Client, settings: Settings, stop: asyncio.Event, server: DevServer | None,
                 activity_threads: int, metrics_address: str | None) -> int:
    """Poll until ``stop`` (0), or until the worker fails or the dev server dies (1)."""
    store = Store(settings.store_url)
    with ThreadPoolExecutor(max_workers=activity_threads, thread_name_prefix="activity") as executor:
        worker = journey_worker(client, settings.task_queue, build_activities(store), executor,
                                graceful_shutdown_timeout=timedelta(seconds=5))
        running = asyncio.create_task(worker.run())
        log.info("worker started", address=settings.temporal_address, namespace=settings.temporal_namespace,
                 task_queue=settings.task_queue, data_dir=str(settings.data_dir),
                 metrics_address=metrics_address)
        watched: set[asyncio.Future[Any]] = {running, asyncio.create_task(stop.wait())}
        if server:
            watched.add(asyncio.create_task(server.process.wait()))
        done, pending = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        for task in pending - {running}:
            task.cancel()
        if running in done:
            log.error("worker failed", error=repr(running.exception()))
            return 1
        if not stop.is_set():
            log.error("dev server exited", status=server.process.returncode if server else None)
        log.info("worker shutting down")
        await worker.shutdown()
        await running
    store.engine.dispose()  # the last connection closed checkpoints SQLite's WAL
    return 0 if stop.is_set() else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the journey worker.")
    parser.add_argument("--dev", action="store_true", help="start an embedded Temporal dev server first")
    parser.add_argument("--no-ui", action="store_true", help="with --dev: no Temporal Web UI (--headless)")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        return asyncio.run(run_worker(Settings(), dev=args.dev, ui=not args.no_ui,
                                      metrics_address=os.environ.get("JOURNEYS_METRICS_ADDRESS") or None))
    except StartupError as exc:
        log.error("startup failed", error=str(exc).splitlines()[0])
        print(f"error: {exc}", file=sys.stderr)
    except Exception:
        log.exception("worker failed")
    return 1


if __name__ == "__main__":
    status = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # not a normal exit: sdk-python#300 can abort the interpreter's finalization
