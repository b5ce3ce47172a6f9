"""`make drill` keeps working: the load drill runs once, small, as a user would run it."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.support import ROOT


def test_the_drill_runs_small_and_checks_itself() -> None:
    run = subprocess.run([sys.executable, "-m", "scripts.drill", "--users", "200", "--exits", "20",
                          "--pings", "20"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert any(line.startswith("machine:") for line in lines)
    assert any(line.startswith("entry     200 users parked in") and "users/s" in line for line in lines)
    for check in ("check     exits: 20/20 exited, 0 sent, 180 still parked  ok",
                  "check     parked after SIGKILL: 180/180 (visibility)  ok",
                  "check     pings: 20 sent for 20 pings, 20 users, each pinged one once "
                  "(status kept)  ok"):
        assert check in lines, run.stdout
    assert "FAILED" not in run.stdout and lines[-1] == "all checks passed"
