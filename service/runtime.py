"""How workers run: one sandbox, the worker's options, Worker Versioning. (The connection, its
converter and the local binaries are in :mod:`connection`; re-exported here for old imports.)

Not workflow code: imported by ``worker.py``, ``starter.py`` and the tests, never by a workflow.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from connection import binary, client_for, connect, connect_settings
from journeys.settings import Settings
from telemetry.ending import leave
from workflows.audience import AudienceWorkflow, PruneBehaviourWorkflow
from workflows.journey import JourneyWorkflow

#: Modules the workflow sandbox shares with the worker instead of re-importing per run.
__all__ = ["binary", "client_for", "connect", "connect_settings", "deployment",
           "journey_worker", "leave", "sandbox_runner"]

PASSTHROUGH = ("journeys", "activities", "workflows", "telemetry", "pydantic", "pydantic_core", "jinja2",
               "markupsafe", "sqlalchemy", "yaml")
WORKFLOWS = [JourneyWorkflow, AudienceWorkflow, PruneBehaviourWorkflow]
#: Activities one worker runs at once (sends are async: they need no thread each).
SENDS_IN_FLIGHT = 64


def sandbox_runner() -> SandboxedWorkflowRunner:
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    return SandboxedWorkflowRunner(restrictions=restrictions)


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


