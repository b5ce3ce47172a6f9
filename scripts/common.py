"""What the scripts (``python -m scripts.demo``, the benchmarks, the drill) share.

Their way out (an exit status, past the Temporal client's abort at exit), their argument parser,
a SQLite store in a temporary directory, a process as ``/proc`` describes it, the end of a child
process and a child process's wait for its parent to go, and the tables they print.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from journeys.store.database import Store
from service.runtime import leave

STARTED = time.monotonic()


def run_script(main: Coroutine[Any, Any, int]) -> NoReturn:
    """Run ``main`` and leave with its status: 130 on Ctrl-C, 1 on an error (printed)."""
    code = 1
    try:
        code = asyncio.run(main)
    except KeyboardInterrupt:
        code = 130
    except SystemExit as exc:
        if isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    leave(code)


def script_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A script's parser: ``prog`` its ``python -m`` line, its module docstring as the help text."""
    return argparse.ArgumentParser(prog=prog, description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


@contextmanager
def scratch_store(prefix: str) -> Iterator[tuple[Store, Path]]:
    """A SQLite store in a new temporary directory, and the directory (for other files)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        tmp = Path(name)
        store = Store(f"sqlite:///{tmp / 'journeys.db'}")
        try:
            yield store, tmp
        finally:
            store.engine.dispose()


def proc_stat(pid: int | str = "self") -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name: state is [0], ppid [1]."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int | str) -> float:
    """CPU seconds (user + system) of a process so far, from /proc; 0 when it is gone."""
    try:
        fields = proc_stat(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_seconds() -> float:
    """Seconds since this process started (imports included), from /proc when it can."""
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(proc_stat()[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic() - STARTED


def wait_or_kill(process: subprocess.Popen[Any], timeout: float) -> None:
    """Wait up to ``timeout`` seconds for ``process`` to end (asked to already), then kill it."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def parent_gone() -> None:
    """Until stdin, a pipe from the parent process, is closed: the parent has let go of this one."""
    loop = asyncio.get_running_loop()
    closed = loop.create_future()

    class Parent(asyncio.Protocol):
        def connection_lost(self, exc: Exception | None) -> None:
            closed.set_result(None)

    await loop.connect_read_pipe(Parent, sys.stdin)
    await closed


class Table:
    """The columns of a printed table, each a title and a format spec: the header and the rows line
    up (the header takes each spec's alignment and width)."""

    def __init__(self, *columns: tuple[str, str]) -> None:
        self.columns = columns

    def header(self) -> None:
        print("  " + " ".join(format(title, re.sub(r"(\.\d+)?[a-z%]?$", "", spec))
                              for title, spec in self.columns))

    def row(self, *values: object) -> None:
        cells = (format(value, spec) for value, (_, spec) in zip(values, self.columns, strict=True))
        print("  " + " ".join(cells), flush=True)
