"""Shared test set-up: the time-skipping server per module, and leaving pytest without the
Temporal client's teardown abort."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from connection.converter import data_converter
from journeys.store.database import Store
from service.runtime import binary, leave
from tests.helpers.support import running_worker

_status: dict[str, int] = {}


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server for the module (one per module: time skipping is global to
    an environment). Modules that need the dev server define their own ``env``."""
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter,
        test_server_existing_path=binary("temporal-test-server"))
    yield environment
    await environment.shutdown()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's data dir, as JOURNEYS_DATA_DIR: its store's journeys.db, for the CLI too."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def store(data_dir: Path) -> Store:
    return Store(f"sqlite:///{data_dir / 'journeys.db'}")


@pytest.fixture(scope="module")
async def worker(request: pytest.FixtureRequest, env: WorkflowEnvironment,
                 store: Store) -> AsyncIterator[None]:
    """A journey worker on the module's ``QUEUE``, for the module."""
    async with running_worker(env.client, store, request.module.QUEUE):
        yield


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # The Temporal client's Rust threads can outlive the interpreter and abort it at exit
    # (sdk-python #300, exit status 134) after every test has passed; the summary is printed
    # by now, so leave with pytest's own status.
    if "code" in _status and not os.environ.get("JOURNEYS_NORMAL_EXIT"):
        leave(_status["code"])
