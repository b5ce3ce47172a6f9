"""What the two scripts, ``python -m scripts.demo`` and ``python -m scripts.bench``, share.

Their way out (an exit status, past the Temporal client's abort at exit), a SQLite store in a
temporary directory, and this process as ``/proc`` describes it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from journeys.store import Store
from workflows.runtime import leave

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


def process_seconds() -> float:
    """Seconds since this process started (imports included), from /proc when it can."""
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(proc_stat()[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic() - STARTED
