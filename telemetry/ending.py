"""How a process ends: its log lines and output flushed, then out at once."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn

__all__ = ["leave"]


def leave(code: int) -> NoReturn:
    """Exit with ``code`` at once, without the interpreter's teardown: the Temporal client's
    Rust threads can abort it (sdk-python #300), turning a finished command into status 134."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader gone, a stream closed
            stream.flush()
    os._exit(code)
