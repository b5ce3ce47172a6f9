"""A process that has imported the command line, and forks one child per ``starter.py`` command.

``python starter.py ARGS`` costs about 1.5 s of CPU, nearly all of it imports; the suite runs
about two hundred. Here each command is a fresh process that starts with the imports done: the
child of a fork of this one, which imported the modules and nothing else (no thread, no Temporal
runtime, no state), then takes the command's environment, stdin, stdout, stderr and argv and
runs ``starter.py``'s ``main`` to its ``leave``.

    python -m tests.helpers.forker SOCKET

On SOCKET (a Unix socket), one request per connection, a JSON line: ``{"args", "env", "stdin",
"stdout", "stderr"}`` (the last three file paths). The answers: ``pid N``, then ``exit N`` (the
returncode, as subprocess gives it). It ends when its stdin does (the test process is gone).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import pkgutil
import select
import shutil
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["cli", "operate", "ingestion", "connection", "journeys", "telemetry", "service",
            "activities", "workflows"]
SKIP = (".migrations",)  # Alembic's environment runs when imported


def preload() -> None:
    """Every module a command may import (the commands import theirs when they run)."""
    import rich.console
    import rich.progress
    import rich.table  # noqa: F401

    for name in PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            if not any(part in module.name for part in SKIP):
                importlib.import_module(module.name)


def _run(request: dict[str, Any]) -> None:
    """In the child: become ``python starter.py ARGS`` and run it to its end."""
    os.chdir(ROOT)
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, flags in ((0, request["stdin"] or os.devnull, os.O_RDONLY),
                            (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    sys.argv = ["starter.py", *request["args"]]
    from cli.main import main
    from telemetry.ending import leave

    try:
        code = main(list(request["args"]))
    except SystemExit as exc:  # argparse's usage errors and --help
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # what the interpreter prints before it exits 1
        traceback.print_exc()
        code = 1
    leave(code)


def serve(path: str) -> None:
    preload()
    gc.collect()
    gc.freeze()  # the children's collections leave the shared pages alone
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(64)
    print("ready", flush=True)
    waiting: dict[int, socket.socket] = {}
    while True:
        readable, _, _ = select.select([listener, sys.stdin], [], [], 0.02)
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 1024):
            listener.close()  # the test process is gone (its atexit may not have run)
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)
            return
        if listener in readable:
            conn, _ = listener.accept()
            request = json.loads(conn.makefile("r").readline())
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                for other in waiting.values():
                    other.close()
                try:
                    _run(request)
                finally:
                    os._exit(1)
            conn.sendall(f"pid {pid}\n".encode())
            waiting[pid] = conn
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = waiting.pop(pid)
            with contextlib.suppress(OSError):  # the test gave up on it
                conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
            conn.close()


if __name__ == "__main__":
    serve(sys.argv[1])
