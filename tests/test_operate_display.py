"""``list``, ``status`` and ``exit`` on hostile data and a failing server (issue 15, minor): ids
with quotes and backslashes are found, a keyed instance's user and key stay apart, hidden
characters are printed as escapes, and a server error is an error (exit 1), not "not running".

On the dev server (visibility), its in-flight updates per workflow limited to one so that the
server refuses a second exit while a first one waits for a push under way."""

from __future__ import annotations

import asyncio
import json
import unicodedata
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from activities.delivery import default_providers
from activities.providers import Outcome, OutgoingMessage, delivered
from cli import funnel as funnel_commands
from journeys.events import Event, instance_id, workflow_id
from journeys.language.models import Channel, Journey
from journeys.settings import Settings
from journeys.store.database import Store
from scripts.bench_scale import chain
from tests.helpers.support import dev_server, eventually, free_port, run_cli, running_worker
from workflows.exits import ExitRequest, ExitResult
from workflows.journey import JourneyWorkflow
from workflows.models import JOURNEY_ID, JOURNEY_KEY, JOURNEY_NODE, USER_ID, JourneyInput

QUEUE = "display"
NODES = [{"id": "started", "type": "action", "event": "Started", "next": "wait"},
         {"id": "wait", "type": "delay", "duration": "1d"}]
PLAIN = Journey.model_validate({"id": "plain", "name": "Plain", "entry": "started", "nodes": NODES})
BUSY = Journey.model_validate({"id": "busy", "name": "Busy", "entry": "started", "nodes": [
    {**NODES[0], "next": "push"},
    {"id": "push", "type": "engagement", "channel": "push", "message": {"body": "hi"}}]})
KEYED = Journey.model_validate({
    "id": "keyed", "name": "Keyed", "entry": "started", "entry_key": "cart_id", "nodes": NODES,
    "events": {"Started": {"properties": ["cart_id"]}}})

#: User ids that end a visibility query's string, or that the dev server's SQLite visibility
#: never matched with "=", and decoys a looser match would also return.
HOSTILE = ['q"uote', "back\\slash", 'both\\"', '"lead', "it's", 'x" OR UserId != "']
DECOYS = ["q", "back", "qx\"uote", "lead"]
#: Characters a terminal hides or acts on, each in a user id and in an exit reason.
HIDDEN = ["\u202e", "\u2066", "\u200b", "\u200d", "\ufeff", "\u2060", "\x85", "\x1b[2J", "\u2028"]


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server("history.maxInFlightUpdates=1") as environment:
        yield environment


@pytest.fixture(scope="module", autouse=True)
async def worker(env: WorkflowEnvironment, store: Store, gate: Gate) -> AsyncIterator[None]:
    async with running_worker(env.client, store, QUEUE, {**default_providers(), Channel.push: gate},
                              send_timeout=600):
        try:
            yield
        finally:  # a held push would hold the worker's shutdown too
            gate.release.set()


class Gate:
    """A push provider that holds every call until released, a vendor call that cannot be taken
    back: a cancel (the send heartbeats, so an exit's cancel reaches it) does not end it, and the
    exit waits for it."""

    name = "gate"

    def __init__(self) -> None:
        self.holding, self.release = asyncio.Event(), asyncio.Event()

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        self.holding.set()
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:  # under way at the vendor: it ends when it ends
                continue
        return delivered("gate-1")


@pytest.fixture(scope="module")
def gate() -> Gate:
    return Gate()


@pytest.fixture(scope="module")
def catalog(data_dir: Path) -> Path:
    folder = data_dir / "catalog"
    folder.mkdir()
    for journey in (PLAIN, KEYED, BUSY):
        (folder / f"{journey.id}.json").write_text(journey.model_dump_json(exclude_none=True))
    return folder


async def start(env: WorkflowEnvironment, journey: Journey, user: str,
                key: str | None = None) -> WorkflowHandle[Any, Any]:
    event = Event(id=f"e-{user}-{key}", name="Started", user_id=user, time=datetime.now(UTC),
                  properties={"cart_id": key} if key else {})
    pairs = [SearchAttributePair(JOURNEY_ID, journey.id), SearchAttributePair(USER_ID, user),
             SearchAttributePair(JOURNEY_NODE, "started")]
    if key is not None:
        pairs.append(SearchAttributePair(JOURNEY_KEY, key))
    return await env.client.start_workflow(
        JourneyWorkflow.run, JourneyInput(journey=journey, user_id=user, entry_event=event, entry_key=key,
                                        send_timeout=600),  # the gate's push outlasts the test
        id=instance_id(journey.id, user, key), task_queue=QUEUE,
        search_attributes=TypedSearchAttributes(pairs))


def cli(env: WorkflowEnvironment, data_dir: Path, catalog: Path, *args: str) -> Any:
    return run_cli(env, data_dir, QUEUE, *args, JOURNEYS_DIR=str(catalog))


async def listed(env: WorkflowEnvironment, data_dir: Path, catalog: Path,
                 *args: str) -> list[dict[str, Any]]:
    run = await asyncio.to_thread(cli, env, data_dir, catalog, "list", *args, "--json")
    assert run.returncode == 0, run.stderr
    return list(json.loads(run.stdout)["journeys"])


async def test_list_finds_users_with_quotes_and_backslashes(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path) -> None:
    for user in [*HOSTILE, *DECOYS]:
        await start(env, PLAIN, user)
    everyone = await eventually(lambda: _at_least(env, data_dir, catalog, len(HOSTILE) + len(DECOYS)),
                                timeout=20)
    assert everyone

    async def finds(user: str) -> None:
        rows = await listed(env, data_dir, catalog, "--user", user)
        assert [(r["user_id"], r["workflow_id"]) for r in rows] == [(user, workflow_id("plain", user))]

    await asyncio.gather(*(finds(user) for user in [*HOSTILE, *DECOYS]))  # processes side by side
    # With the other filters too, and a limit that counts the exact matches only.
    rows = await listed(env, data_dir, catalog, "--user", 'q"uote', "--journey", "plain",
                        "--status", "running", "--limit", "1")
    assert [r["user_id"] for r in rows] == ['q"uote']
    assert await listed(env, data_dir, catalog, "--user", 'q"uote', "--journey", "keyed") == []


async def _at_least(env: WorkflowEnvironment, data_dir: Path, catalog: Path, count: int) -> bool:
    return len(await listed(env, data_dir, catalog, "--journey", "plain", "--limit", "500")) >= count


async def test_list_shows_a_keyed_instance_s_user_and_key_apart(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path) -> None:
    pairs = [("a/b", "c/1"), ("a", "b/c/1"), ("a/b/c", "1")]  # one text when joined by "/"
    for user, key in pairs:
        await start(env, KEYED, user, key)
    rows = await eventually(lambda: _keyed(env, data_dir, catalog, len(pairs)), timeout=20)
    assert rows is not None
    assert sorted((r["user_id"], r["key"]) for r in rows) == sorted(pairs)
    run = await asyncio.to_thread(cli, env, data_dir, catalog, "list", "--journey", "keyed")
    assert run.returncode == 0, run.stderr
    header, *lines = run.stdout.splitlines()
    assert header.split()[:3] == ["journey", "user", "key"]
    cells = sorted(tuple(line.split()[1:3]) for line in lines[:-1])
    assert cells == sorted(pairs)
    assert "a/b/c/1" not in run.stdout
    # Unkeyed rows only: no key column.
    run = await asyncio.to_thread(cli, env, data_dir, catalog, "list", "--journey", "plain")
    assert run.stdout.split()[:3] == ["journey", "user", "status"]


async def _keyed(env: WorkflowEnvironment, data_dir: Path, catalog: Path,
                 count: int) -> list[dict[str, Any]] | None:
    rows = await listed(env, data_dir, catalog, "--journey", "keyed")
    return rows if len(rows) >= count else None


async def test_list_status_and_exit_print_hidden_characters_as_escapes(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path) -> None:
    users = [f"ada{ch}gnp.exe" for ch in HIDDEN]
    for user in users:
        await start(env, PLAIN, user)
    await eventually(lambda: _at_least(env, data_dir, catalog, len(users)), timeout=20)

    async def shown(ch: str, user: str) -> None:  # each user's commands in turn, the users side by side
        escaped = user.encode("unicode_escape").decode()
        run = await asyncio.to_thread(cli, env, data_dir, catalog, "list", "--user", user)
        assert run.returncode == 0, run.stderr
        assert escaped in run.stdout and ch not in run.stdout, (ch, run.stdout)
        assert all(line.isprintable() for line in run.stdout.splitlines())
        if unicodedata.category(ch[0]) != "Cf":  # status refuses control characters in an id
            return
        run = await asyncio.to_thread(cli, env, data_dir, catalog, "status", user)
        assert run.returncode == 0, run.stderr
        assert workflow_id("plain", escaped) in run.stdout and ch not in run.stdout
        assert all(line.isprintable() for line in run.stdout.splitlines())
        reason = f"line one\nline two {ch}"
        run = await asyncio.to_thread(cli, env, data_dir, catalog, "exit", user, "--reason", reason)
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("exited") and ch not in run.stdout

    await asyncio.gather(*(shown(ch, user) for ch, user in zip(HIDDEN, users, strict=True)))
    run = await asyncio.to_thread(cli, env, data_dir, catalog, "status", users[0])
    assert "exit: exited by an operator: line one\\nline two \\u202e" in run.stdout, run.stdout
    assert len([line for line in run.stdout.splitlines() if line.strip().startswith("exit:")]) == 1


async def test_exit_reports_a_server_error_and_fails(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path, gate: Gate) -> None:
    """The server refuses a second exit while the first is in flight (its limit here is one):
    exit says it failed and why, exits 1, and the user is still in; "not running" stays for a
    journey that ended or never was (exit 0)."""
    handle = await start(env, BUSY, "busy")
    await asyncio.wait_for(gate.holding.wait(), 15)
    first = asyncio.create_task(handle.execute_update(
        "exit", ExitRequest(reason="first"), result_type=ExitResult))
    await asyncio.sleep(1)  # accepted: it waits for the push under way
    run = await asyncio.to_thread(cli, env, data_dir, catalog, "exit", "busy", "--json")
    assert run.returncode == 1, run.stdout + run.stderr
    # (The Temporal core's retry warnings also reach stdout, before the JSON: not this case's.)
    [done] = json.loads(run.stdout[run.stdout.index("[\n"):])
    assert done["outcome"] == "failed" and "RESOURCE_EXHAUSTED" in done["error"], done
    run = await asyncio.to_thread(cli, env, data_dir, catalog, "exit", "busy")
    last = run.stdout.splitlines()[-1]
    assert run.returncode == 1 and last.startswith("failed") and "not running" not in run.stdout
    assert "journey/busy/busy: RPCError RESOURCE_EXHAUSTED" in last
    await eventually(lambda: _busy(env, data_dir, catalog), timeout=20)
    run = await asyncio.to_thread(cli, env, data_dir, catalog, "exit", "--journey", "busy", "--all")
    assert run.returncode == 1 and "0 exited, 1 failed," in run.stdout, run.stdout + run.stderr
    assert "busy" in run.stderr and "RESOURCE_EXHAUSTED" in run.stderr
    assert not first.done()
    gate.release.set()
    assert (await asyncio.wait_for(first, 15)).reason == "exited by an operator: first"
    # Ended meanwhile: "not running", exit 0.
    run = await asyncio.to_thread(cli, env, data_dir, catalog, "exit", "busy")
    assert run.returncode == 0 and "in no running journey" in run.stdout, run.stdout


async def _busy(env: WorkflowEnvironment, data_dir: Path, catalog: Path) -> bool:
    return bool(await listed(env, data_dir, catalog, "--journey", "busy"))


async def test_stats_says_which_part_did_not_answer_and_why(
        env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Counting who waits where is one visibility count per wait node: a big journey's count
    ran out of time and stats said "did not answer ()" (a TimeoutError has no message)."""
    long = Journey.model_validate(chain(300))
    address = env.client.service_client.config.target_host
    settings = Settings(TEMPORAL_ADDRESS=address)
    counted = await funnel_commands._waiting(settings, long)  # in time: every wait node counted
    assert counted is not None and len(counted) == 300 and sum(counted.values()) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(funnel_commands, "COUNT_DEADLINE", 0.001)
    assert await funnel_commands._waiting(settings, long) is None
    said = capsys.readouterr().err
    assert (f"Temporal at {address}: counting who waits at the 300 wait nodes of chain did not "
            "finish within 0.001 s (TimeoutError): counted without who waits now ('-')") in said
    assert "()" not in said
    closed = f"127.0.0.1:{free_port()}"
    assert await funnel_commands._waiting(Settings(TEMPORAL_ADDRESS=closed), long) is None
    said = capsys.readouterr().err
    assert said.startswith(f"Temporal at {closed} could not be reached (RuntimeError: ")
    assert "()" not in said
