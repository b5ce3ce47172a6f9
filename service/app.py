"""The worker process around the journey worker: with ``--dev`` the embedded dev server first
(``service.devserver``) and the mail sink, with ``--serve`` the HTTP API on the same client;
SDK and project metrics on JOURNEYS_METRICS_ADDRESS; everything stopped in order on SIGINT or
SIGTERM. ``worker.py`` is its command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import structlog
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from activities import build_activities
from activities.providers.mailsink import MailSink, start_dev_sink
from activities.providers.registry import build_providers, choices, close_providers
from connection import address_of, namespace_of
from ingestion.audiences import Audiences, keep_schedules
from ingestion.serving import api_settings, bind, start_api
from ingestion.triggers import Triggers
from journeys.egress import LOOPBACK
from journeys.language.problems import UsageError
from journeys.links import links_of
from journeys.settings import Settings
from journeys.store.caps import caps_setting
from journeys.store.database import Store
from journeys.validation.catalog import catalog
from service.devserver import DataDirLock, DevServer, StartupError, start_dev_server
from service.runtime import connect, connect_settings, deployment, journey_worker
from telemetry.logs import core_logging

log = structlog.get_logger("worker")
T = TypeVar("T")


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
                     stop: asyncio.Event | None = None, activity_threads: int = 16,
                     serve: tuple[str, int] | None = None) -> int:
    """Run the worker (``dev``: the dev server first) until ``stop`` is set (default: SIGINT or
    SIGTERM); returns an exit status. SDK metrics for Prometheus are served on ``metrics_address``;
    ``serve`` (host, port) also serves the HTTP tracking API, on the worker's client.

    A data dir that is busy or unwritable, or a store that cannot open, raises UsageError before
    anything is started or logged.
    """
    lock = DataDirLock(settings.data_dir) if dev else None  # held until we return
    if dev:  # local stand-ins for vendors (a webhook receiver on 127.0.0.1) may be reached
        settings = settings.model_copy(update={"egress_allow": ",".join(
            filter(None, (settings.egress_allow, LOOPBACK)))})
    api_socket: socket.socket | None = None
    try:
        show_key = bool(serve and dev and not settings.write_key)  # the key --dev makes
        if serve:
            settings = api_settings(settings, serve[0], dev)
            api_socket = bind(*serve)
        store = Store(settings.store_url)
        # Each vendor's settings, checked before anything starts (built again in _serve, where
        # --dev's mail sink is known).
        await close_providers(build_providers(settings, store))
    except BaseException:
        if api_socket:
            api_socket.close()
        if lock:
            lock.release()
        raise
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if stop is None else ()
    stop = stop or asyncio.Event()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    server: DevServer | None = None
    sink: MailSink | None = None
    try:
        if dev:
            started = time.monotonic()
            server = await _unless_stopped(start_dev_server(settings, ui=ui, lock=lock), stop)
            if server is None:
                return 0
            log.info("dev server started", address=server.address, ui_url=server.ui_url,
                     db=server.db_path, pid=server.process.pid,
                     seconds=round(time.monotonic() - started, 2))
            if server.ui_url:
                print(f"Temporal UI: {server.ui_url}", flush=True)
            # Email goes to <data dir>/mail/ unless JOURNEYS_SMTP_HOST names a real server.
            sink, settings = await start_dev_sink(settings)
            if sink:
                log.info("mail sink started", address=sink.address, folder=str(sink.folder))
        # The core's lines as JSON, with the rest of the log (and the metrics, if asked for).
        runtime = Runtime(telemetry=TelemetryConfig(
            logging=core_logging(),
            metrics=PrometheusConfig(bind_address=metrics_address) if metrics_address else None))
        try:
            client = await _unless_stopped(
                connect(address_of(settings), namespace_of(settings), runtime=runtime) if dev
                else connect_settings(settings, runtime=runtime), stop)
        except RuntimeError as exc:
            raise StartupError(f"cannot reach Temporal at {address_of(settings)} (is it running? "
                               f"`python worker.py --dev` starts one): {exc}") from None
        return 0 if client is None else await _serve(client, settings, store, stop, server,
                                                     activity_threads, metrics_address, api_socket, show_key)
    finally:
        if sink:
            await asyncio.to_thread(sink.stop)
        if server:
            log.info("dev server stopped", status=await server.stop())
        store.engine.dispose()  # the last connection closed checkpoints SQLite's WAL
        if api_socket:
            api_socket.close()
        if lock:
            lock.release()
        for sig in signals:
            loop.remove_signal_handler(sig)
        log.info("shutdown complete")


async def _serve(client: Client, settings: Settings, store: Store, stop: asyncio.Event,
                 server: DevServer | None, activity_threads: int, metrics_address: str | None,
                 api_socket: socket.socket | None, show_key: bool) -> int:
    """Poll until ``stop`` (0), or until the worker fails, the API fails or the dev server dies (1)."""
    with ThreadPoolExecutor(max_workers=activity_threads, thread_name_prefix="activity") as executor:
        providers = build_providers(settings, store)
        _log_providers(settings)
        activities = build_activities(store, providers, settings.send_timeout,
                                      caps_setting(settings.caps), settings.intellinode_refresh,
                                      settings.send_unknown_retries,
                                      links_of(store, settings.public_url, settings.link_secret))
        # trigger_journey nodes enter the catalog's journeys (ingestion routes the event).
        triggers = Triggers(store, settings.journeys_dir, send_timeout=settings.send_timeout,
                            priority=settings.task_priority)
        # Audience journeys: their occurrences enter a segment's users, paced.
        audiences = Audiences(store, settings.journeys_dir, rate=settings.audience_rate,
                              page_size=settings.audience_page, send_timeout=settings.send_timeout,
                              priority=settings.task_priority, yield_delay=settings.audience_delay)
        worker = journey_worker(client, settings.task_queue,
                                [*activities, triggers.trigger_journey, *audiences.activities],
                                executor,
                                graceful_shutdown_timeout=timedelta(seconds=5),
                                deployment_config=deployment(settings))
        running = asyncio.create_task(worker.run())
        _log_catalog(settings)  # before "worker started": a reader of the log has both then
        log.info("worker started", address=address_of(settings), namespace=namespace_of(settings),
                 task_queue=settings.task_queue, data_dir=str(settings.data_dir),
                 deployment=settings.deployment_name, build_id=settings.build_id,
                 metrics_address=metrics_address)
        watched: set[asyncio.Future[Any]] = {running, asyncio.create_task(stop.wait()),
                                             asyncio.create_task(keep_schedules(client, settings))}
        if server:
            watched.add(asyncio.create_task(server.process.wait()))
        api = await start_api(client, settings, api_socket, show_key) if api_socket else None
        if api:
            watched.add(api.task)
        done, pending = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        for task in pending - {running} - ({api.task} if api else set()):
            task.cancel()
        if api:
            await api.stop()
        if running in done:
            log.error("worker failed", error=repr(running.exception()))
            return 1
        if api and api.task in done and not stop.is_set():
            log.error("HTTP API stopped", error=repr(api.task.exception()))
        elif not stop.is_set():
            log.error("dev server exited", status=server.process.returncode if server else None)
        log.info("worker shutting down")
        await worker.shutdown()
        await running
        await close_providers(providers)
    return 0 if stop.is_set() else 1


def _log_providers(settings: Settings) -> None:
    """Which provider serves each channel, and what the outbox-served ones still need."""
    for choice in choices(settings):
        log.info("channel provider", channel=choice.channel.value, provider=choice.provider,
                 **({"missing": list(choice.missing)} if choice.missing else {}))


def _log_catalog(settings: Settings) -> None:
    """Name every broken file of the journey catalog in the log: its journey routes no event.

    (Running journeys carry their definition; the catalog is what the router reads.)
    """
    try:
        found = catalog(settings.journeys_dir)
    except UsageError as exc:
        log.warning("no journey catalog", journeys_dir=str(settings.journeys_dir), error=str(exc))
        return
    for path, problems in found.broken.items():
        log.error("journey file skipped", file=path, problems=[str(p) for p in problems])
    log.info("journey catalog", journeys_dir=str(settings.journeys_dir),
             journeys=[j.id for j in found.journeys], broken=len(found.broken))
