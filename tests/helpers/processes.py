"""Processes a test runs as a user would: ``python worker.py --dev`` with its output in files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from temporalio.client import Client

from service.runtime import connect
from tests.helpers.support import ROOT

TASK_QUEUE = "journeys-test-worker"


class WorkerProcess:
    """``python worker.py --dev --no-ui`` with its output in files (a full pipe would block it)."""

    def __init__(self, data_dir: Path, port: int, name: str, metrics_port: int | None = None,
                 overrides: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        self.address = f"127.0.0.1:{port}"
        self.out, self.err = data_dir.parent / f"{name}.out", data_dir.parent / f"{name}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "JOURNEYS_"))}
        # Every setting explicit, so a developer's .env in the repo root cannot leak in.
        env |= {"TEMPORAL_ADDRESS": self.address, "TEMPORAL_NAMESPACE": "default",
                "JOURNEYS_DATA_DIR": str(data_dir), "JOURNEYS_TASK_QUEUE": TASK_QUEUE,
                "JOURNEYS_DATABASE_URL": f"sqlite:///{data_dir / 'journeys.db'}"}
        if metrics_port:
            env["JOURNEYS_METRICS_ADDRESS"] = f"127.0.0.1:{metrics_port}"
        env |= overrides or {}
        with self.out.open("wb") as out, self.err.open("wb") as err:
            command = [sys.executable, str(ROOT / "worker.py"), "--dev", "--no-ui", *args]
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)

    def events(self) -> list[str]:
        lines = self.err.read_text(errors="replace").splitlines()
        return [json.loads(line).get("event", "") for line in lines if line.startswith("{")]

    def output(self) -> str:
        out, err = (path.read_text(errors="replace") for path in (self.out, self.err))
        return f"stdout:\n{out}\nstderr:\n{err}"

    async def ready(self, timeout: float = 20.0) -> Client:
        """Connect (retrying) once the worker says it has started; fail early if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            assert code is None, f"worker exited with {code}\n{self.output()}"
            if "worker started" in self.events():
                try:
                    return await connect(self.address)
                except RuntimeError:
                    pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"worker not ready in {timeout}s\n{self.output()}")

    async def stop(self, sig: signal.Signals, timeout: float = 15.0) -> int:
        self.process.send_signal(sig)
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert self.process.poll() is not None, f"worker still running {timeout}s after {sig.name}"
        return self.process.returncode

    async def exit_code(self, timeout: float) -> int:
        """Its exit status, once it exits by itself (a start that must fail); killed otherwise."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.process.wait), timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:  # a failed test: try the graceful way, then force
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def temporal_servers(data_dir: Path) -> list[int]:
    """The pids of the `temporal server start-dev` processes on ``data_dir``'s temporal.db."""
    db = str((data_dir / "temporal.db").resolve())
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if b"start-dev" in args and db.encode() in args and state != "Z":
            pids.append(int(proc.name))
    return pids
