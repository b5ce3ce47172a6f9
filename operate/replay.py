"""``starter.py replay``: the check to run before a new worker goes out. The histories of
running (and recently closed) journeys come from the server and replay on this code; a
journey whose recorded commands this code would not issue again is printed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Replayer

from connection.converter import data_converter
from operate.listing import quoted
from service.runtime import WORKFLOWS, sandbox_runner


class Replayed(BaseModel):
    checked: int
    broken: list[tuple[str, str]]  # (workflow id, why)


async def replay_journeys(client: Client, *, journey: str | None = None, limit: int = 100,
                          closed_within: timedelta = timedelta(days=1),
                          workflows: Sequence[type[Any]] = WORKFLOWS) -> Replayed:
    """Replay up to ``limit`` journeys (running, or closed within ``closed_within``)."""
    since = (datetime.now(UTC) - closed_within).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = (f'WorkflowType = "JourneyWorkflow" AND '
             f'(ExecutionStatus = "Running" OR CloseTime > "{since}")')
    if journey:
        query += f' AND JourneyId = "{quoted(journey)}"'
    # The core logs each failing task at WARN on stderr; the failures are what we print.
    quiet = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))))
    replayer = Replayer(workflows=list(workflows), data_converter=data_converter,
                        workflow_runner=sandbox_runner(), runtime=quiet)
    histories = client.list_workflows(query, limit=limit).map_histories()
    checked, broken = 0, []
    async with replayer.workflow_replay_iterator(histories) as results:
        async for result in results:
            checked += 1
            if result.replay_failure is not None:
                broken.append((result.history.workflow_id, _why(result.replay_failure)))
    return Replayed(checked=checked, broken=broken)


def _why(failure: BaseException) -> str:
    """The core's own words ("[TMPRL1100] Nondeterminism error: ..."), not its Rust debug dump."""
    text = str(failure)
    found = re.search(r'message: "((?:[^"\\]|\\.)*)"', text)
    return (found.group(1) if found else text.strip().splitlines()[0])[:300]
