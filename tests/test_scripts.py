"""`make demo` and `make bench` keep working: each runs once, small, as a user would run it."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.helpers.support import ROOT
from tests.test_costs import BUDGET


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)


def test_demo_walks_every_scenario_and_checks_itself() -> None:
    run = _run("scripts.demo")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Hey, the iPhone 14 in your cart is still waiting." in run.stdout
    assert "FAILED" not in run.stdout and "7 users, 15 messages" in run.stdout
    # Then `starter.py stats` of each journey: bob bought within the hour, at the inaction node.
    assert "journey abandoned-cart: entered 2, timed out 0" in run.stdout
    assert "converted (Charged): messaged 1/2 (50.0%)" in run.stdout
    # What each example journey costs a user, held to its budget (tests/test_costs.py).
    costs = {(user, journey): int(actions) for _, user, journey, actions, *_ in
             (line.split() for line in run.stdout.splitlines() if line.startswith("cost "))}
    assert costs.keys() == BUDGET.keys()
    over = {played: (actions, BUDGET[played]) for played, actions in costs.items()
            if actions > BUDGET[played]}
    assert not over, f"over budget (actions, budget): {over}"


def test_bench_prints_the_ratio() -> None:
    run = _run("scripts.bench", "--users", "10", "--rounds", "1", "--rounds-memory", "0",
               "--messages", "100", "--delivery-rounds", "1", "--ingest-users", "20",
               "--ingest-rounds", "1", "--latency-seconds", "1", "--latency-rounds", "1")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "ratio journey / bare" in run.stdout
    assert "ratio provider / bare" in run.stdout
    assert "ratio ingest / bare" in run.stdout and "latency ratio journey / bare" in run.stdout
    assert "cost per workflow, journey:" in run.stdout and "billable actions" in run.stdout
    # Each example journey's cost per user, beside what a hand-written workflow would pay.
    assert "cost per user of each example journey" in run.stdout
    assert re.search(r"alice +abandoned-cart +\d+ actions \(hand-written \d+, [\d.]+x\)", run.stdout)
