"""The Temporal core's own lines (issue 15, the logging minor): through Python's logging as JSON,
never the core's coloured text on stderr. A real worker on the time-skipping server."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from journeys.logs import configure_logging, core_logging
from service.runtime import binary
from workflows.journey import JourneyWorkflow


async def test_the_cores_lines_are_json() -> None:
    out = io.StringIO()
    configure_logging(out, logging.DEBUG)  # the core says little above DEBUG while all is well
    runtime = Runtime(telemetry=TelemetryConfig(logging=core_logging("DEBUG")))
    env = await WorkflowEnvironment.start_time_skipping(
        runtime=runtime, data_converter=pydantic_data_converter,
        test_server_existing_path=binary("temporal-test-server"))
    try:
        async with Worker(env.client, task_queue="core-lines", workflows=[JourneyWorkflow]):
            await asyncio.sleep(0.5)
    finally:
        await env.shutdown()
        # The core may still flush a line or two: into ``out``, above DEBUG only.
        logging.getLogger("temporalio.core").setLevel(logging.WARNING)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    core = [line for line in lines if line["logger"].startswith("temporalio.core")]
    assert core, out.getvalue()[-2000:]
    assert all("\x1b" not in line["event"] and "temporal_log" not in line for line in core)
