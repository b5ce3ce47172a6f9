"""What every benchmark sets up: the dev server, the logs, and the bare workflows' worker.

``scripts.bench``, ``scripts.bench_upsert`` and ``scripts.bench_ingest`` (its worker process) all
start the same WAL-file dev server, log as ``worker.py`` does, and run their bare workflows on a
worker set up as ``running_worker`` sets up the journeys' one, whose activity claims one outbox row.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from connection.converter import data_converter
from journeys.store.database import OutboxRow, Store
from scripts.bench_workflows import BareWrite
from scripts.common import script_parser
from service.runtime import binary, sandbox_runner
from telemetry.logs import configure_logging
from workflows.models import SEARCH_ATTRIBUTES

BARE_JOURNEY_ID = "bare-bench"
WAL_ARGS = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]


async def start_server(tmp: Path, *, wal_file: bool) -> WorkflowEnvironment:
    """A dev server: on ``tmp/temporal.db`` in WAL mode (the embedded default), or in memory."""
    extra = WAL_ARGS if wal_file else []
    return await WorkflowEnvironment.start_local(
        data_converter=data_converter, dev_server_existing_path=binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_database_filename=str(tmp / "temporal.db") if wal_file else None,
        dev_server_extra_args=extra)


def production_logs(sink: TextIO) -> None:
    """Log as ``worker.py`` does (a JSON object per line) into ``sink``: the cost, not the noise."""
    configure_logging(sink)


class BareActivities:
    """The bare workflows' activity: one outbox row, through the same store as the sends."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @activity.defn(name="bare_write")
    def write(self, input: BareWrite) -> bool:
        _, inserted = self.store.outbox_claim(OutboxRow(
            idempotency_key=input.idempotency_key, journey_id=BARE_JOURNEY_ID,
            user_id=input.user_id, workflow_id=input.workflow_id, node_id=input.node_id,
            channel="push", status="delivered", content={"body": "bare"}))
        return inserted


@asynccontextmanager
async def bare_worker(client: Client, store: Store, queue: str, workflows: Sequence[type[Any]]
                      ) -> AsyncIterator[Worker]:
    """A worker of bare ``workflows`` on ``queue``, set up as ``running_worker`` sets up the
    journeys' one: the same sandbox passthrough (and the workflows' modules), 8 activity threads
    and slots, the bare activity."""
    modules = dict.fromkeys(["scripts.bench_workflows", *(w.__module__ for w in workflows)])
    restrictions = sandbox_runner().restrictions.with_passthrough_modules(*modules)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with Worker(client, task_queue=queue, workflows=list(workflows),
                          activities=[BareActivities(store).write], activity_executor=executor,
                          workflow_runner=SandboxedWorkflowRunner(restrictions=restrictions),
                          max_concurrent_activities=executor._max_workers) as worker:
            yield worker


def batch_parser(prog: str, doc: str | None, delay_help: str) -> argparse.ArgumentParser:
    """The parser of a benchmark of batches of workflows: ``--users``, ``--rounds``, ``--delay``."""
    parser = script_parser(prog, doc)
    parser.add_argument("--users", type=int, default=200, help="users (workflows) per batch")
    parser.add_argument("--rounds", type=int, default=3,
                        help="batches of each kind after the warm-up (alternating)")
    parser.add_argument("--delay", type=int, default=1, help=delay_help)
    return parser
