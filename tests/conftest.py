"""Shared test set-up: leave pytest without the Temporal client's teardown abort."""

from __future__ import annotations

import os
import sys

import pytest

_status: dict[str, int] = {}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # The Temporal client's Rust threads can outlive the interpreter and abort it at exit
    # (sdk-python #300, exit status 134) after every test has passed; the summary is printed
    # by now, so leave with pytest's own status.
    if "code" in _status and not os.environ.get("JOURNEYS_NORMAL_EXIT"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_status["code"])
