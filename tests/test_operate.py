"""Per-user control (issue 10, section 1): ``list`` through visibility, ``exit`` through the
journey's update (no message goes out after it returns, not even one retrying or under way),
``exit --journey J --all``. On the dev server (visibility), with real worker and CLI processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.workflowservice.v1 import SetWorkerDeploymentCurrentVersionRequest
from temporalio.common import SearchAttributePair, TypedSearchAttributes, VersioningBehavior
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.delivery import default_providers
from activities.providers import Outcome, OutgoingMessage, delivered
from journeys.events import Event, legacy_workflow_id, workflow_id
from journeys.language.models import Channel, EngagementNode, Journey
from journeys.language.problems import UsageError
from journeys.settings import Settings, load_settings
from journeys.store.database import Store
from operate.replay import replay_journeys
from service.runtime import deployment
from tests.helpers.support import ROOT, Harness, dev_server, eventually, run_cli, running_worker
from workflows.exits import ExitRequest, ExitResult
from workflows.journey import JourneyWorkflow
from workflows.models import JOURNEY_ID, JOURNEY_NODE, USER_ID, JourneyInput

QUEUE = "operate"

OPS = Journey.model_validate({
    "id": "ops", "name": "Ops", "entry": "started", "exit_when": ["Left"],
    "nodes": [
        {"id": "started", "type": "action", "event": "Started", "next": "hello"},
        {"id": "hello", "type": "engagement", "channel": "push",
         "message": {"body": "Hello"}, "next": "wait-day"},
        {"id": "wait-day", "type": "delay", "duration": "1d", "next": "later"},
        {"id": "later", "type": "engagement", "channel": "push", "message": {"body": "later"}}]})


class GateProvider:
    """Push as the test says: through ("ok"), in an outage ("down"), or held mid-call ("hold")."""

    name = "gate"

    def __init__(self) -> None:
        self.mode, self.calls, self.finished = "ok", 0, 0
        self.holding, self.release = asyncio.Event(), asyncio.Event()

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        self.calls += 1
        if self.mode == "down":
            raise ConnectionError("provider unavailable")
        if self.mode == "hold":
            self.holding.set()
            await self.release.wait()
        self.finished += 1
        return delivered(f"gate-{self.calls}")


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


@pytest.fixture(scope="module")
def gate() -> GateProvider:
    return GateProvider()


@pytest.fixture(scope="module")
async def journeys(env: WorkflowEnvironment, store: Store, gate: GateProvider,
                   data_dir: Path) -> AsyncIterator[Harness]:
    (data_dir / "catalog").mkdir()
    (data_dir / "catalog" / "ops.json").write_text(OPS.model_dump_json(exclude_none=True))
    async with running_worker(env.client, store, QUEUE, {**default_providers(), Channel.push: gate}):
        yield Harness(env, store, [OPS], QUEUE, search_attributes=True)


def cli(journeys: Harness, data_dir: Path, *args: str) -> Any:
    """The command, from a thread when the test's loop (which runs the worker) is running."""
    run = run_cli(journeys.env, data_dir, QUEUE, *args, JOURNEYS_DIR=str(data_dir / "catalog"))
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout) if "--json" in args else run.stdout


def statuses(journeys: Harness, user: str) -> list[tuple[str, str, str | None]]:
    return [(r.node_id, r.status, r.reason) for r in journeys.outbox(user)]


async def test_exit_during_an_outage_cancels_the_retrying_send(
        journeys: Harness, gate: GateProvider, data_dir: Path) -> None:
    gate.mode = "down"
    await journeys.send("ann", "Started")
    assert await eventually(lambda: _at_least(gate, 2))  # retrying through the outage
    shown = await asyncio.to_thread(cli, journeys, data_dir, "exit", "ann", "--reason", "ticket 42",
                                    "--json")
    assert [(d["journey_id"], d["outcome"], d["node"]) for d in shown] == [("ops", "exited", "hello")]
    # Returned: the send is settled and recorded, and no attempt follows.
    assert statuses(journeys, "ann") == [
        ("hello", "cancelled", "not sent: exited by an operator: ticket 42")]
    calls = gate.calls
    gate.mode = "ok"
    state = await journeys.result("ops", "ann")
    await asyncio.sleep(3)  # past the next retry's backoff
    assert gate.calls == calls and gate.finished == 0
    assert (state.status, state.exit_reason) == ("exited", "exited by an operator: ticket 42")
    status = await asyncio.to_thread(cli, journeys, data_dir, "status", "ann")
    assert "exit: exited by an operator: ticket 42" in status
    await journeys.record_history("exited-by-update", "ops", "ann")


async def test_exit_during_an_attempt_returns_after_it(
        journeys: Harness, gate: GateProvider) -> None:
    """A vendor call under way cannot be taken back: the exit answers once it has finished, so
    that what it did is recorded and nothing goes out after the answer."""
    gate.mode, gate.release = "hold", asyncio.Event()
    gate.holding.clear()
    await journeys.send("ben", "Started")
    await asyncio.wait_for(gate.holding.wait(), 15)
    handle = journeys.env.client.get_workflow_handle(workflow_id("ops", "ben"))
    update = asyncio.create_task(handle.execute_update(
        "exit", ExitRequest(reason="held"), result_type=ExitResult))
    await asyncio.sleep(1.5)
    assert not update.done()  # still waiting for the attempt
    gate.release.set()
    result = await asyncio.wait_for(update, 15)
    assert result.reason == "exited by an operator: held"
    assert statuses(journeys, "ben") == [("hello", "delivered", None)]  # recorded before the answer
    gate.mode = "ok"
    state = await journeys.result("ops", "ben")
    assert [m.node_id for m in state.messages] == ["hello"]  # and nothing after it


async def test_exit_while_already_leaving_waits_for_the_attempt_too(
        journeys: Harness, gate: GateProvider) -> None:
    """An exit event came first, during a vendor call: the operator's exit is not turned away
    at once (it would answer while the message still goes out); it waits like any other."""
    gate.mode, gate.release = "hold", asyncio.Event()
    gate.holding.clear()
    await journeys.send("hal", "Started")
    await asyncio.wait_for(gate.holding.wait(), 15)
    await journeys.send("hal", "Left")  # leaving by the journey's exit event
    handle = journeys.env.client.get_workflow_handle(workflow_id("ops", "hal"))
    update = asyncio.create_task(handle.execute_update(
        "exit", ExitRequest(reason="again"), result_type=ExitResult))
    await asyncio.sleep(1.5)
    assert not update.done()
    gate.release.set()
    result = await asyncio.wait_for(update, 15)
    assert result.reason == "exit event 'Left'"  # the first reason stays
    assert statuses(journeys, "hal") == [("hello", "delivered", None)]
    gate.mode = "ok"


async def test_exit_reaches_a_journey_under_a_release_0_1_id(
        journeys: Harness, data_dir: Path) -> None:
    """status shows journeys started under 0.1's ids (journey-<journey>-<user>): exit ends them."""
    event = Event(id="old-1", name="Started", user_id="old", time=datetime.now(UTC))
    old = await journeys.env.client.start_workflow(
        JourneyWorkflow.run, JourneyInput(journey=OPS, user_id="old", entry_event=event),
        id=legacy_workflow_id("ops", "old"), task_queue=QUEUE,
        search_attributes=TypedSearchAttributes([
            SearchAttributePair(JOURNEY_ID, "ops"), SearchAttributePair(USER_ID, "old"),
            SearchAttributePair(JOURNEY_NODE, "started")]))
    shown = await asyncio.to_thread(cli, journeys, data_dir, "exit", "old", "--json")
    assert [(d["workflow_id"], d["outcome"]) for d in shown] == [("journey-ops-old", "exited")]
    assert (await old.result()).exit_reason == "exited by an operator: no reason given"


async def test_list_shows_node_event_and_wake_up(journeys: Harness, data_dir: Path) -> None:
    users = ["lia", "max", "noa"]
    for user in users:
        await journeys.send(user, "Started")

    def listed() -> dict[str, Any]:
        rows = cli(journeys, data_dir, "list", "--journey", "ops", "--status", "running", "--json")
        return {r["user_id"]: r for r in rows["journeys"] if r["user_id"] in users}

    def waiting() -> dict[str, Any]:  # (listed at "hello" while their message goes out)
        return {user: row for user, row in listed().items() if row["node"] == "wait-day"}

    rows = await eventually(lambda: _ready(waiting, len(users)), timeout=20)
    assert {(r["node"], r["event"]) for r in rows.values()} == {("wait-day", "Started")}
    assert all(r["next_wake"] for r in rows.values())
    one = (await asyncio.to_thread(cli, journeys, data_dir, "list", "--user", "max", "--json"))["journeys"]
    assert [r["workflow_id"] for r in one] == [workflow_id("ops", "max")]
    text = await asyncio.to_thread(cli, journeys, data_dir, "list", "--journey", "ops", "--limit", "1")
    assert "1 shown; more" in text


async def test_exit_all_takes_everyone_out(journeys: Harness, data_dir: Path) -> None:
    users = [f"all-{i}" for i in range(6)]
    for user in users:
        await journeys.send(user, "Started")
    await eventually(lambda: _ready(lambda: _running(journeys, data_dir), 6), timeout=20)
    text = await asyncio.to_thread(cli, journeys, data_dir, "exit", "--journey", "ops", "--all",
                                   "--reason", "paused")
    exited = int(text.split(" exited")[0].split()[-1])
    assert exited >= 6  # (and the other tests' users still waiting)
    for user in users:
        state = await journeys.result("ops", user)
        assert state.exit_reason == "exited by an operator: paused"
    assert await eventually(lambda: _ready(lambda: _running(journeys, data_dir), 0, exact=True))


async def test_exit_all_quotes_the_journey_it_is_given(journeys: Harness, data_dir: Path) -> None:
    """A journey id that tries to widen the visibility query matches nobody."""
    await journeys.send("zed", "Started")
    await eventually(lambda: _ready(lambda: _listed_user(journeys, data_dir, "zed"), 1), timeout=20)
    for hostile in ('x" OR JourneyId != "', 'x\\" OR JourneyId != "\\', "x' OR JourneyId != '"):
        text = await asyncio.to_thread(cli, journeys, data_dir, "exit", "--journey", hostile, "--all")
        assert text.startswith("0 exited"), hostile
        assert (await replay_journeys(journeys.env.client, journey=hostile)).checked == 0
    assert (await journeys.handle("ops", "zed").query(JourneyWorkflow.status)).exit_reason is None


def _running(journeys: Harness, data_dir: Path) -> dict[str, Any]:
    rows = cli(journeys, data_dir, "list", "--journey", "ops", "--status", "running", "--json")
    return {r["user_id"]: r for r in rows["journeys"] if r["user_id"].startswith("all-")}


async def _ready(listed: Any, count: int, exact: bool = False) -> Any:
    rows = await asyncio.to_thread(listed)
    return (rows or True) if (len(rows) == count if exact else len(rows) >= count) else None


async def _at_least(gate: GateProvider, calls: int) -> bool:
    return gate.calls >= calls


async def test_replay_checks_the_server_histories_on_this_code(
        journeys: Harness, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every journey of this module replays on the current code (exit 0); an interpreter
    changed the way a careless deploy would (a send that became another activity) breaks the
    journeys that passed that node, and replay names them (exit 1 from the command)."""
    await journeys.send("rex", "Started")
    await eventually(lambda: _ready(lambda: _listed_user(journeys, data_dir, "rex"), 1), timeout=20)
    run = await asyncio.to_thread(run_cli, journeys.env, data_dir, QUEUE, "replay", "--journey", "ops")
    assert run.returncode == 0, run.stdout + run.stderr
    checked = int(run.stdout.split("replayed ")[1].split()[0])
    assert checked >= 5 and run.stdout.rstrip().endswith(": 0 would break")

    async def changed(self: JourneyWorkflow, node: EngagementNode) -> str | None:
        await workflow.execute_activity("record_outcome", node.id, result_type=bool,
                                        start_to_close_timeout=timedelta(seconds=5))
        return node.next

    monkeypatch.setattr(JourneyWorkflow, "_message", changed)
    found = await replay_journeys(journeys.env.client, journey="ops", limit=100)
    assert found.checked == checked and len(found.broken) == checked  # each sent "hello"
    assert workflow_id("ops", "rex") in {wid for wid, _ in found.broken}
    assert all("nondetermin" in why.lower() for _, why in found.broken), found.broken[:2]


def _listed_user(journeys: Harness, data_dir: Path, user: str) -> list[Any]:
    rows = cli(journeys, data_dir, "list", "--user", user, "--json")
    return list(rows["journeys"])


async def test_a_temporal_toml_profile_reaches_the_server(
        journeys: Harness, data_dir: Path, tmp_path: Path) -> None:
    """No TEMPORAL_ADDRESS: the address and namespace come from a temporal.toml profile, as
    the Temporal CLI would read them."""
    address = journeys.env.client.service_client.config.target_host
    toml = tmp_path / "temporal.toml"
    toml.write_text(f'[profile.local]\naddress = "{address}"\nnamespace = "default"\n')
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "JOURNEYS_"))}
    environ |= {"TEMPORAL_CONFIG_FILE": str(toml), "TEMPORAL_PROFILE": "local",
                "JOURNEYS_DATA_DIR": str(data_dir), "JOURNEYS_TASK_QUEUE": QUEUE,
                "JOURNEYS_DIR": str(data_dir / "catalog")}
    run = await asyncio.to_thread(
        subprocess.run, [sys.executable, "starter.py", "list", "--journey", "ops", "--json"],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["journeys"]  # this module's journeys, through the profile


async def test_worker_versioning_runs_journeys_on_the_current_version(
        env: WorkflowEnvironment, store: Store) -> None:
    """JOURNEYS_DEPLOYMENT_NAME and JOURNEYS_BUILD_ID turn Worker Versioning on: once the
    version is current, journeys run on it, auto-upgrading by default."""
    settings = Settings(JOURNEYS_DEPLOYMENT_NAME="journeys", JOURNEYS_BUILD_ID="b1",
                        TEMPORAL_ADDRESS=env.client.service_client.config.target_host)
    async with running_worker(env.client, store, "versioned", deployment_config=deployment(settings)):
        request = SetWorkerDeploymentCurrentVersionRequest(
            namespace="default", deployment_name="journeys", build_id="b1")

        async def made_current() -> bool:
            try:
                await env.client.workflow_service.set_worker_deployment_current_version(request)
            except RPCError:
                return False  # the worker has not polled yet
            return True

        assert await eventually(made_current, timeout=30)
        harness = Harness(env, store, [OPS], "versioned", search_attributes=True)
        await harness.send("vic", "Started")
        rows = await eventually(lambda: _pushes_of(harness, "vic"), timeout=20)
        assert rows[0].status == "kept"
        handle = env.client.get_workflow_handle(workflow_id("ops", "vic"))
        info = (await handle.describe()).raw_description.workflow_execution_info.versioning_info
        assert info.behavior == VersioningBehavior.AUTO_UPGRADE.value
        assert info.deployment_version.build_id == "b1"
        await handle.execute_update("exit", ExitRequest(reason="done"), result_type=ExitResult)


async def _pushes_of(harness: Harness, user: str) -> list[Any]:
    """The user's outbox rows once settled: a row is "pending" from its claim to the provider's
    answer, and a busy machine (pytest-xdist) can be read in between."""
    rows = harness.outbox(user)
    return rows if rows and all(row.status != "pending" for row in rows) else []


def test_a_build_id_needs_its_deployment_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEYS_BUILD_ID", "b1")
    with pytest.raises(UsageError, match="JOURNEYS_BUILD_ID is set without its pair"):
        load_settings()
