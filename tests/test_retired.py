"""A journey that leaves the catalog while users are in it: its file renamed away, removed,
given another id, or broken. Its users keep getting their wait and exit events through the
same way in as every event (``Ingestion``, behind ``event``, ``ingest`` and the HTTP API), and
``status`` and ``exit`` find them, with a warning naming the journey and its file, until they
leave. On the dev server (visibility) with a real worker and a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from ingestion.pipeline import Ingestion
from ingestion.router import Router
from journeys.events import Event, instance_id, workflow_id
from journeys.store.database import Store
from journeys.validation.catalog import clear_cache
from tests.helpers.support import dev_server, eventually, run_cli, running_worker
from workflows.journey import JourneyWorkflow

QUEUE = "retired"

STAY = """\
id: stay
name: Stay
entry: joined
exit_when: [Leave]
nodes:
  - {id: joined, type: action, event: Joined, next: confirm}
  - {id: confirm, type: action, event: Confirmed, within: 1d, next: hello}
  - {id: hello, type: engagement, channel: in_app, message: {title: Hi, body: Hello}, next: rest}
  - {id: rest, type: delay, duration: 1d, next: bye}
  - {id: bye, type: exit}
"""
CARTS = """\
id: carts
name: Carts
entry: started
entry_key: cart_id
exit_when: [Checkout Completed, Account Deleted]
events:
  Checkout Started: {properties: [cart_id]}
  Checkout Completed: {properties: [cart_id]}
  Account Deleted: {properties: []}
nodes:
  - {id: started, type: action, event: Checkout Started, next: rest}
  - {id: rest, type: delay, duration: 1d, next: bye}
  - {id: bye, type: exit}
"""
OTHER = """\
id: other
name: Other
entry: begun
nodes:
  - {id: begun, type: action, event: Begun, next: bye}
  - {id: bye, type: exit}
"""

QUICK = OTHER.replace("other", "quick").replace("Begun", "Quick")


def renamed_away(folder: Path, name: str) -> None:
    (folder / name).rename(folder / f"{name}.off")


def removed(folder: Path, name: str) -> None:
    (folder / name).unlink()


def new_id(folder: Path, name: str) -> None:
    path = folder / name
    text = path.read_text()
    path.write_text(text.replace("id: stay\n", "id: stay-v2\n").replace("id: carts\n", "id: carts-v2\n"))


def broken(folder: Path, name: str) -> None:
    path = folder / name
    path.write_text(path.read_text().replace("type: delay", "type: dealy"))


def renamed_same_id(folder: Path, name: str) -> None:  # still in the catalog: routed as ever
    (folder / name).rename(folder / f"renamed-{name}")


def edited(folder: Path, name: str) -> None:  # same id and file; its wait and exit events renamed
    path = folder / name
    path.write_text(path.read_text().replace("Confirmed", "Approved").replace("[Leave]", "[Quit]"))


CHANGES: list[Callable[[Path, str], None]] = [renamed_away, removed, new_id, broken, renamed_same_id,
                                              edited]


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


@pytest.fixture(scope="module")
async def worker(env: WorkflowEnvironment, store: Store) -> AsyncIterator[None]:
    async with running_worker(env.client, store, QUEUE):
        yield


def catalog_with(data_dir: Path, name: str, *files: tuple[str, str]) -> Path:
    folder = data_dir / name
    folder.mkdir()
    (folder / "other.yaml").write_text(OTHER)  # the catalog still routes something
    for file, text in files:
        (folder / file).write_text(text)
    return folder


def ingestion(env: WorkflowEnvironment, store: Store, folder: Path, recheck: float = 1.0) -> Ingestion:
    """What a process that routes events holds (``event``, ``ingest`` and ``serve`` alike)."""
    return Ingestion(Router(env.client, QUEUE, receipts=store), store, folder, recheck=recheck)


def event(user: str, name: str, n: int, **props: object) -> Event:
    return Event(id=f"{user}-{name}-{n}", name=name, user_id=user, properties=dict(props),
                 time=datetime.now(UTC))


async def node_of(env: WorkflowEnvironment, wid: str) -> str | None:
    state = await env.client.get_workflow_handle_for(JourneyWorkflow.run, wid).query(JourneyWorkflow.status)
    return state.current_node


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("fresh", [True, False], ids=["new-process", "same-process"])
async def test_wait_and_exit_events_reach_a_journey_whatever_happens_to_its_file(
        env: WorkflowEnvironment, store: Store, worker: None, data_dir: Path,
        change: Callable[[Path, str], None], fresh: bool) -> None:
    user = f"u-{change.__name__}-{fresh}"
    folder = catalog_with(data_dir, f"catalog-{change.__name__}-{fresh}", ("stay.yaml", STAY))
    first = ingestion(env, store, folder, recheck=0)
    [started] = await first.track(event(user, "Joined", 1))
    assert started.action == "started"
    wid = workflow_id("stay", user)
    assert await eventually(lambda: _at(env, wid, "confirm"))

    change(folder, "stay.yaml")
    if fresh:  # a new process: nothing of the last good version in memory
        clear_cache()
    later = ingestion(env, store, folder, recheck=0) if fresh else first

    routed = await later.track(event(user, "Confirmed", 2))  # the wait's event
    assert [(r.journey_id, r.workflow_id, r.action) for r in routed] == [("stay", wid, "signalled")]
    assert await eventually(lambda: _at(env, wid, "rest"))
    assert [m.node_id for m in store.outbox_list(user_id=user)] == ["hello"]

    routed = await later.track(event(user, "Leave", 3))  # the exit event
    assert [(r.journey_id, r.action) for r in routed] == [("stay", "signalled")]
    result = await env.client.get_workflow_handle_for(JourneyWorkflow.run, wid).result()
    assert result.exit_reason == "exit event 'Leave'"
    assert await later.track(event(user, "Leave", 4)) == []  # it has ended: nothing to reach


async def test_an_edited_journey_routes_each_version_s_events_to_its_own_runs(
        env: WorkflowEnvironment, store: Store, worker: None, data_dir: Path) -> None:
    """Edited in place (same id): a run of the earlier version still exits on its exit event,
    read by a process that never saw that version; a run of the new version ignores it and
    exits on its own."""
    folder = catalog_with(data_dir, "catalog-edited", ("stay.yaml", STAY))
    await ingestion(env, store, folder, recheck=0).track(event("old-ann", "Joined", 1))
    edited(folder, "stay.yaml")
    clear_cache()
    later = ingestion(env, store, folder, recheck=0)  # a new process, after the edit
    await later.track(event("new-bob", "Joined", 1))
    ann, bob = workflow_id("stay", "old-ann"), workflow_id("stay", "new-bob")
    assert await eventually(lambda: _at(env, bob, "confirm"))

    for user in ("old-ann", "new-bob"):
        routed = await later.track(event(user, "Leave", 2))
        assert [(r.journey_id, r.action) for r in routed] == [("stay", "signalled")], user
    result = await env.client.get_workflow_handle_for(JourneyWorkflow.run, ann).result()
    assert result.exit_reason == "exit event 'Leave'"
    await asyncio.sleep(0.5)  # the new version does not listen to it: still waiting
    assert await node_of(env, bob) == "confirm"
    await later.track(event("new-bob", "Quit", 3))
    result = await env.client.get_workflow_handle_for(JourneyWorkflow.run, bob).result()
    assert result.exit_reason == "exit event 'Quit'"


async def _at(env: WorkflowEnvironment, wid: str, node: str) -> bool:
    return await node_of(env, wid) == node


def exits_renamed(folder: Path, name: str) -> None:  # same id, its exit events renamed
    path = folder / name
    path.write_text(path.read_text().replace("Checkout Completed", "Order Placed")
                    .replace("Account Deleted", "Account Closed"))


@pytest.mark.parametrize("change", [removed, exits_renamed], ids=lambda c: c.__name__)
async def test_a_keyed_journey_that_left_gets_each_event_for_its_instances(
        env: WorkflowEnvironment, store: Store, worker: None, data_dir: Path,
        change: Callable[[Path, str], None]) -> None:
    """An event with the key reaches that key's instance only; one without it, every one. Also
    when the journey was edited in place and no longer exits on those events."""
    user = f"kay-{change.__name__}"
    folder = catalog_with(data_dir, f"catalog-keyed-{change.__name__}", ("carts.yaml", CARTS))
    first = ingestion(env, store, folder, recheck=0)
    for n, cart in enumerate(("c1", "c2", "c3")):
        [r] = await first.track(event(user, "Checkout Started", n, cart_id=cart))
        assert r.action == "started"
    change(folder, "carts.yaml")
    clear_cache()
    later = ingestion(env, store, folder, recheck=0)
    one = instance_id("carts", user, "c1")
    routed = await later.track(event(user, "Checkout Completed", 10, cart_id="c1"))
    assert [(r.workflow_id, r.action) for r in routed] == [(one, "signalled")]
    assert (await env.client.get_workflow_handle_for(JourneyWorkflow.run, one).result()).exit_reason \
        == "exit event 'Checkout Completed'"
    others = [instance_id("carts", user, c) for c in ("c2", "c3")]
    for wid in others:
        assert (await env.client.get_workflow_handle(wid).describe()).status \
            == WorkflowExecutionStatus.RUNNING
    routed = await later.track(event(user, "Account Deleted", 11))
    assert sorted((r.workflow_id, r.action) for r in routed) == [(w, "signalled") for w in others]
    for wid in others:
        await env.client.get_workflow_handle_for(JourneyWorkflow.run, wid).result()


async def test_a_journey_nobody_runs_any_more_is_forgotten(
        env: WorkflowEnvironment, store: Store, worker: None, data_dir: Path) -> None:
    """Once visibility counts no running workflow of a journey that left, twice, it is forgotten:
    then an event of any user costs no look at the store for it."""
    folder = catalog_with(data_dir, "catalog-done", ("quick.yaml", QUICK))
    first = ingestion(env, store, folder, recheck=0)
    [r] = await first.track(event("qu", "Quick", 1))
    await env.client.get_workflow_handle_for(JourneyWorkflow.run, r.workflow_id).result()
    removed(folder, "quick.yaml")
    later = ingestion(env, store, folder, recheck=0)
    assert "quick" in (await later.retired()).ids  # one count of nobody is not enough

    async def forgotten() -> bool:
        later._retired_at = float("-inf")  # look again now, not in RECHECK seconds
        return "quick" not in (await later.retired()).ids

    assert await eventually(forgotten)


def cli(env: WorkflowEnvironment, data_dir: Path, folder: Path,
        *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, data_dir, QUEUE, *args, JOURNEYS_DIR=str(folder))


@pytest.mark.parametrize("change", [renamed_away, new_id, broken], ids=lambda c: c.__name__)
async def test_status_and_exit_find_the_user_by_their_runs_not_the_file(
        env: WorkflowEnvironment, store: Store, worker: None, data_dir: Path,
        change: Callable[[Path, str], None]) -> None:
    user = f"s-{change.__name__}"
    folder = catalog_with(data_dir, f"catalog-status-{change.__name__}", ("stay.yaml", STAY))
    await ingestion(env, store, folder).track(event(user, "Joined", 1))
    wid = workflow_id("stay", user)
    assert await eventually(lambda: _at(env, wid, "confirm"))
    change(folder, "stay.yaml")

    sent = await asyncio.to_thread(cli, env, data_dir, folder, "event", user, "Confirmed")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.split() == ["signalled", "stay", wid]
    assert await eventually(lambda: _at(env, wid, "rest"))

    status = await asyncio.to_thread(cli, env, data_dir, folder, "status", user)
    assert status.returncode == 0, status.stderr
    assert f"{wid}  running  node=rest" in status.stdout
    warning = next(line for line in status.stdout.splitlines() if "warning:" in line)
    assert f"journey 'stay' is not in the catalog {folder}" in warning
    if change is broken:
        assert f"its file {folder / 'stay.yaml'} is broken" in warning
    else:
        assert "no file holds it any more" in warning
    rows = json.loads((await asyncio.to_thread(cli, env, data_dir, folder, "status", user,
                                               "--json")).stdout)
    assert [(r["journey_id"], r["status"]) for r in rows] == [("stay", "running")]

    # Found by visibility alone too (a store that never saw the entry).
    elsewhere = data_dir / f"elsewhere-{change.__name__}"
    shutil.rmtree(elsewhere, ignore_errors=True)
    elsewhere.mkdir()
    seen = await asyncio.to_thread(lambda: run_cli(env, elsewhere, QUEUE, "status", user,
                                                   JOURNEYS_DIR=str(folder)))
    assert f"{wid}  running" in seen.stdout and "warning: journey 'stay'" in seen.stdout

    done = await asyncio.to_thread(cli, env, data_dir, folder, "exit", user, "--reason", "ticket 7")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:3] == ["exited", "stay", wid]
    assert "warning: journey 'stay' is not in the catalog" in done.stderr
    result = await env.client.get_workflow_handle_for(JourneyWorkflow.run, wid).result()
    assert result.exit_reason == "exited by an operator: ticket 7"
    again = await asyncio.to_thread(cli, env, data_dir, folder, "exit", user)
    assert f"user {user} is in no running journey" in again.stdout
    assert "running" not in (await asyncio.to_thread(cli, env, data_dir, folder, "status", user)).stdout


async def test_exit_journey_names_one_that_left(
        env: WorkflowEnvironment, store: Store, worker: None, data_dir: Path) -> None:
    folder = catalog_with(data_dir, "catalog-exit-journey", ("stay.yaml", STAY))
    await ingestion(env, store, folder).track(event("ej", "Joined", 1))
    wid = workflow_id("stay", "ej")
    assert await eventually(lambda: _at(env, wid, "confirm"))
    removed(folder, "stay.yaml")
    done = await asyncio.to_thread(cli, env, data_dir, folder, "exit", "ej", "--journey", "stay")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("exited")


async def test_an_event_reaches_it_when_no_journey_of_the_catalog_is_valid(
        env: WorkflowEnvironment, store: Store, worker: None, data_dir: Path) -> None:
    """A catalog of one journey, whose file breaks: ``event`` still routes (the store knows
    journeys that left), where it used to stop with 'no journey of the catalog can route'."""
    folder = data_dir / "catalog-alone"
    folder.mkdir()
    (folder / "stay.yaml").write_text(STAY)
    await ingestion(env, store, folder).track(event("al", "Joined", 1))
    wid = workflow_id("stay", "al")
    assert await eventually(lambda: _at(env, wid, "confirm"))
    broken(folder, "stay.yaml")
    sent = await asyncio.to_thread(cli, env, data_dir, folder, "event", "al", "Leave")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.split() == ["signalled", "stay", wid]
    assert f"{folder / 'stay.yaml'}" in sent.stderr  # the broken file is named
    result = await env.client.get_workflow_handle_for(JourneyWorkflow.run, wid).result()
    assert result.exit_reason == "exit event 'Leave'"
