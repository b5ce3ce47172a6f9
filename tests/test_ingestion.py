"""The one way in (``ingestion``), counted in round trips to a real dev server.

An entry is one start with the event in its input, nothing before it; a wait or exit event is
one signal per journey that listens; an event no journey uses never reaches Temporal. The
client's RPCs are recorded at the service client, below the SDK: nothing is replaced.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from connection.converter import data_converter
from ingestion.index import Index
from ingestion.pipeline import Ingestion
from ingestion.router import Router
from journeys.events import Event, workflow_id
from journeys.funnel.stats import journey_stats
from journeys.language.models import Journey
from journeys.store.database import Store
from journeys.validation.catalog import catalog, clear_cache
from operate.status import waiting_now
from tests.helpers.support import EXAMPLES, HISTORIES, dev_server, eventually, examples, running_worker

QUEUE = "journeys-ingestion"


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


class Recorded:
    """A client of its own on the dev server, whose every RPC name is counted."""

    def __init__(self, client: Client) -> None:
        self.client, self.calls = client, Counter[str]()
        service = client.service_client
        call = service._rpc_call

        async def counted(rpc: str, *args: Any, **kwargs: Any) -> Any:
            self.calls[rpc] += 1
            return await call(rpc, *args, **kwargs)

        service._rpc_call = counted  # type: ignore[method-assign]

    def take(self) -> Counter[str]:
        calls, self.calls = self.calls, Counter()
        return calls


@pytest.fixture
async def recorded(env: WorkflowEnvironment) -> Recorded:
    target = env.client.service_client.config.target_host
    return Recorded(await Client.connect(target, data_converter=data_converter))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two journeys of the examples, with their event catalog: the cart one exits on Charged."""
    clear_cache()
    for name in ("abandoned-cart.yaml", "onboarding-inaction.yaml", "event-catalog.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    return tmp_path


def _entry(journey: Journey) -> str:
    event = getattr(journey.entry_node, "event", None)
    assert isinstance(event, str)
    return event


def _event(user: str, name: str, **props: Any) -> Event:
    return Event(id=f"e-{uuid.uuid4()}", name=name, user_id=user, properties=props,
                 time=datetime.now(UTC))


async def test_each_event_costs_what_it_must_and_no_more(
        env: WorkflowEnvironment, store: Store, recorded: Recorded, folder: Path) -> None:
    journeys = catalog(folder).journeys
    cart = next(j for j in journeys if j.id == "abandoned-cart")
    router = Router(recorded.client, QUEUE, receipts=store, legacy_ids=True)
    ingestion = Ingestion(router, store, folder)
    async with running_worker(env.client, store, QUEUE):
        assert await ingestion.track(_event("u-page", "Page Viewed")) == []
        assert recorded.take() == Counter()  # in no journey's index: Temporal never hears of it

        user = f"u-{uuid.uuid4().hex[:6]}"
        routed = await ingestion.track(_event(user, _entry(cart), product_name="x"))
        assert [r.action for r in routed] == ["started"]
        # One start; the namespace is asked once per router whether 0.1's ids exist (none).
        assert recorded.take() == Counter({"start_workflow_execution": 1, "count_workflow_executions": 1})

        again = await ingestion.track(_event(user, _entry(cart), product_name="y"))
        assert [r.action for r in again] == ["signalled"]  # already in: the event reaches the run
        assert recorded.take() == Counter({"start_workflow_execution": 1, "signal_workflow_execution": 1})

        exit_event = sorted(cart.exit_when)[0]
        assert [r.action for r in await ingestion.track(_event(user, exit_event))] == ["signalled"]
        assert recorded.take() == Counter({"signal_workflow_execution": 1})
        handle = env.client.get_workflow_handle(workflow_id(cart.id, user))
        await eventually(lambda: _closed(handle))


async def _closed(handle: Any) -> bool:
    return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING


async def test_an_entry_of_a_user_whose_run_ended_is_tried_again(
        env: WorkflowEnvironment, store: Store, folder: Path) -> None:
    """reentry after_exit: a start that finds a closed run starts a new one (not a signal)."""
    journeys = list(catalog(folder).journeys)
    cart = next(j for j in journeys if j.id == "abandoned-cart").model_copy(
        update={"reentry": "after_exit"})
    router, user = Router(env.client, QUEUE), f"u-{uuid.uuid4().hex[:6]}"
    async with running_worker(env.client, store, QUEUE):
        name = _entry(cart)
        assert [r.action for r in await router.route_event([cart], _event(user, name))] == ["started"]
        await router.route_event([cart], _event(user, sorted(cart.exit_when)[0]))
        handle = env.client.get_workflow_handle(workflow_id(cart.id, user))
        await eventually(lambda: _closed(handle))
        assert [r.action for r in await router.route_event([cart], _event(user, name))] == ["started"]
        await router.route_event([cart], _event(user, sorted(cart.exit_when)[0]))
        await eventually(lambda: _closed(handle))
        # The first run, entered with the event in its input (no start signal): a replay fixture.
        runs = [w async for w in env.client.list_workflows(f'WorkflowId = "{handle.id}"')]
        assert len(runs) == 2
        path = HISTORIES / "entry-in-input.json"
        if not path.exists():
            first = min(runs, key=lambda w: w.start_time)
            history = await env.client.get_workflow_handle(handle.id, run_id=first.run_id).fetch_history()
            path.write_text(history.to_json())


def test_the_index_holds_each_journey_under_the_names_that_route_to_it() -> None:
    found = examples()
    index = Index.of(list(found.values()))
    cart = found["abandoned-cart"]
    for name in {_entry(cart), *cart.exit_when}:
        assert cart in index.for_event(name)
    assert index.for_event("Page Viewed") == ()
    birthday = [j for j in found.values() if j.id in {p.id for p in index.for_profile(["birthday"])}]
    assert birthday and all(j.entry_node.type == "date_time" for j in birthday)


async def test_a_catalog_edit_is_picked_up_and_a_broken_edit_keeps_the_last_good(
        env: WorkflowEnvironment, store: Store, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    clear_cache()
    folder = tmp_path / "catalog"
    folder.mkdir()
    journey = {"id": "hello", "name": "hello", "entry": "in",
               "nodes": [{"id": "in", "type": "action", "event": "Signed Up", "next": "hi"},
                         {"id": "hi", "type": "engagement", "channel": "sms",
                          "message": {"text": "hi"}}]}
    ingestion = Ingestion(Router(env.client, QUEUE), store, folder, recheck=0)
    assert ingestion.index().for_event("Signed Up") == ()
    (folder / "hello.yaml").write_text(yaml.safe_dump(journey))
    assert [j.id for j in ingestion.index().for_event("Signed Up")] == ["hello"]

    journey["nodes"][1]["channel"] = "carrier-pigeon"  # type: ignore[index]
    (folder / "hello.yaml").write_text(yaml.safe_dump(journey))
    with caplog.at_level(logging.WARNING, logger="journeys.ingestion"):
        index = ingestion.index()
    assert [j.id for j in index.for_event("Signed Up")] == ["hello"]  # the last good one
    assert ingestion.catalog.kept == (str(folder / "hello.yaml"),)
    assert "its last good version routes until it is fixed" in caplog.text
    assert "node 'hi' (channel)" in caplog.text  # and why

    (folder / "hello.yaml").unlink()  # removing a file is the change itself
    assert ingestion.index().for_event("Signed Up") == ()

    (folder / "hello.yaml").write_text(yaml.safe_dump({**journey, "nodes": [
        journey["nodes"][0], {**journey["nodes"][1], "channel": "sms"}]}))  # type: ignore[dict-item]
    assert [j.id for j in ingestion.index().for_event("Signed Up")] == ["hello"]
    shutil.rmtree(folder)  # the whole folder gone: what was read keeps routing, said once
    with caplog.at_level(logging.WARNING, logger="journeys.ingestion"):
        assert [j.id for j in ingestion.index().for_event("Signed Up")] == ["hello"]
        assert [j.id for j in ingestion.index().for_event("Signed Up")] == ["hello"]
    assert caplog.text.count("journey catalog unreadable") == 1


async def test_stats_count_who_waits_where_through_visibility(
        env: WorkflowEnvironment, store: Store, folder: Path) -> None:
    """The `waiting` column of `starter.py stats`: users parked at each wait node, by JourneyNode."""
    cart = next(j for j in catalog(folder).journeys if j.id == "abandoned-cart")
    router, users = Router(env.client, QUEUE, receipts=store), [f"w-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    async with running_worker(env.client, store, QUEUE):
        for user in users:
            await router.route_event([cart], _event(user, _entry(cart), product_name="x"))

        async def parked() -> dict[str, int] | None:
            counts = await waiting_now(env.client, cart)
            return counts if counts and counts.get(cart.entry, 0) >= 3 else None

        counts = await eventually(parked)
        assert counts is not None and counts[cart.entry] >= 3, counts
        stats = journey_stats(store, cart, counts)
        assert next(n for n in stats.nodes if n.node_id == cart.entry).waiting_now == counts[cart.entry]
        for user in users:  # they leave: nobody is left waiting from this test
            await router.route_event([cart], _event(user, sorted(cart.exit_when)[0]))
