"""Lines that were not JSON (issue 15, the logging minor): the Temporal core's own (a real worker on
the time-skipping server) and uvicorn's (a real server, an application error's traceback)."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from connection.converter import data_converter
from ingestion.guard import api_config
from journeys.settings import Settings
from service.runtime import binary
from telemetry.logs import configure_logging, core_logging
from tests.helpers.support import free_port
from workflows.journey import JourneyWorkflow


async def test_the_cores_lines_are_json() -> None:
    out = io.StringIO()
    configure_logging(out, logging.DEBUG)  # the core says little above DEBUG while all is well
    runtime = Runtime(telemetry=TelemetryConfig(logging=core_logging("DEBUG")))
    env = await WorkflowEnvironment.start_time_skipping(
        runtime=runtime, data_converter=data_converter,
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


async def test_a_500_is_one_json_line_with_its_traceback() -> None:
    """uvicorn's own lines (an application error's traceback) go through the JSON renderer."""

    async def boom(request: Request) -> None:
        raise RuntimeError("boom")

    out = io.StringIO()
    configure_logging(out)
    port = free_port()
    app = Starlette(routes=[Route("/boom", boom)])
    server = uvicorn.Server(api_config(app, Settings(), host="127.0.0.1", port=port))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{port}/boom")).status_code == 500
    finally:
        server.should_exit = True
        await task
    lines = [json.loads(line) for line in out.getvalue().splitlines()]  # every line JSON
    [error] = [line for line in lines if line["event"].startswith("Exception in ASGI application")]
    assert error["logger"] == "uvicorn.error" and "RuntimeError: boom" in error["exception"]
