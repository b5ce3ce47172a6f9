"""``python starter.py ARGS`` for the tests: a fresh process per command, without its imports.

Each command is a child of ``tests/helpers/forker.py``, a process (one per test process, started
at the first command) that imported the command line and nothing else. The child is a new
process as a user's is (its own environment, stdin, stdout, stderr, exit status, no state left
by another command or by the test), but it starts with the imports done: about 0.1 s of CPU
against 1.5 s. The entry point itself (``python starter.py``) keeps its tests in real processes
(``tests/test_cli.py``; ``event``, ``status`` and ``outbox`` against a dev server in
``tests/test_devserver.py``), and ``JOURNEYS_TEST_CLI=process`` runs every command that way.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_started = threading.Lock()
_forker: list[tuple[subprocess.Popen[bytes], str]] = []


def _socket() -> str:
    """The forker's socket, started at the first call (and stopped when this process ends)."""
    with _started:
        if _forker and _forker[0][0].poll() is None:
            return _forker[0][1]
        folder = tempfile.mkdtemp(prefix="journeys-forker-")
        if len(folder) > 80:  # a Unix socket's path holds at most 107 bytes: a long TMPDIR
            os.rmdir(folder)
            folder = tempfile.mkdtemp(prefix="journeys-forker-", dir="/tmp")
        path = os.path.join(folder, "forker.sock")
        process = subprocess.Popen([sys.executable, "-m", "tests.helpers.forker", path], cwd=ROOT,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert process.stdout is not None
        if process.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the command forker did not start (exit {process.wait()})")
        _forker[:] = [(process, path)]
        atexit.register(process.kill)
        atexit.register(shutil.rmtree, folder, True)
        return path


def starter(args: list[str], environ: Mapping[str, str], stdin: str | None = None,
            timeout: float = 60, process: bool = False) -> subprocess.CompletedProcess[str]:
    """``python starter.py ARGS`` with ``environ`` over this process's environment (started
    from scratch with ``process``)."""
    command = [sys.executable, "starter.py", *args]
    variables = {**os.environ, **environ}
    if process or os.environ.get("JOURNEYS_TEST_CLI") == "process" or not hasattr(os, "fork"):
        return subprocess.run(command, cwd=ROOT, env=variables, input=stdin,
                              capture_output=True, text=True, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="journeys-command-") as folder:
        files = {name: os.path.join(folder, name) for name in ("stdin", "stdout", "stderr")}
        Path(files["stdin"]).write_text(stdin or "")
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(timeout)
            conn.connect(_socket())
            conn.sendall(json.dumps({"args": args, "env": variables, **files}).encode() + b"\n")
            answers = conn.makefile("r")
            pid = int(answers.readline().split()[1])
            try:
                code = int(answers.readline().split()[1])
            except (TimeoutError, IndexError):
                os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(command, timeout) from None
        out, err = (Path(files[name]).read_text(errors="replace") for name in ("stdout", "stderr"))
    return subprocess.CompletedProcess(command, code, out, err)
