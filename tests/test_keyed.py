"""Keyed journeys (issue 9, section 3): ``entry_key: cart_id`` runs one instance per user and
cart, side by side. Driven as users drive it, through ``Ingestion.track`` and a real worker, on
the dev server (one for the module: the JourneyKey search attribute needs its visibility; no
test here needs time to pass). The validator's rule is tested at the end."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from ingestion.keyed import instances
from ingestion.pipeline import Ingestion
from ingestion.router import Router
from journeys.events import Event, Routed, instance_id, key_of_instance, workflow_id
from journeys.language.loader import load_document
from journeys.language.models import EventSchema, Journey
from journeys.store.database import Store
from journeys.store.tables import entries
from journeys.validation.catalog import clear_cache
from journeys.validation.validate import validate_loaded, validate_paths
from operate.status import user_status
from tests.helpers.support import EXAMPLES, HISTORIES, dev_server, eventually, run_cli
from workflows.journey import JourneyWorkflow
from workflows.models import JOURNEY_KEY, JourneyState

QUEUE = "keyed"
CART_JOURNEY = "checkout-per-cart"  # examples/checkout-per-cart.yaml

#: A keyed journey with a wait mid-journey: after entry, it waits for "Opened App".
OPENED: dict[str, Any] = {
    "id": "opened-per-cart", "name": "Opened, per cart", "entry": "started", "entry_key": "cart_id",
    "exit_when": ["Cart Emptied"],
    "events": {"Cart Started": {"properties": ["cart_id"]},
               "Opened App": {"properties": ["cart_id", "screen"]}},
    "nodes": [
        {"id": "started", "type": "action", "event": "Cart Started", "next": "wait-open"},
        {"id": "wait-open", "type": "action", "event": "Opened App", "within": "1d",
         "next": "push-opened"},
        {"id": "push-opened", "type": "engagement", "channel": "push",
         "message": {"body": "Back on {{ event.screen | default('home') }}"}, "next": "rest"},
        {"id": "rest", "type": "delay", "duration": "2d"},
    ]}


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example keyed journey with its catalog, and the mid-journey one."""
    folder = tmp_path_factory.mktemp("keyed-catalog")
    shutil.copy(EXAMPLES / f"{CART_JOURNEY}.yaml", folder)
    shutil.copy(EXAMPLES / "event-catalog.yaml", folder)
    (folder / "opened-per-cart.yaml").write_text(yaml.safe_dump(OPENED, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def ingestion(env: WorkflowEnvironment, store: Store, worker: None, catalog: Path) -> Ingestion:
    clear_cache()
    return Ingestion(Router(env.client, QUEUE, receipts=store), store, catalog)


async def track(ingestion: Ingestion, user: str, name: str, event_id: str | None = None,
                **props: Any) -> list[Routed]:
    event = Event(id=event_id or f"e-{uuid.uuid4()}", name=name, user_id=user,
                  properties=props, time=datetime.now(UTC))
    return await ingestion.track(event)


def seen(routed: list[Routed]) -> list[tuple[str, str]]:
    return sorted((r.workflow_id, r.action) for r in routed)


def handle(env: WorkflowEnvironment, journey: str, user: str,
           key: str) -> WorkflowHandle[JourneyWorkflow, JourneyState]:
    return env.client.get_workflow_handle_for(JourneyWorkflow.run, instance_id(journey, user, key))


async def closed(h: WorkflowHandle[JourneyWorkflow, JourneyState]) -> JourneyState:
    """The state of a run once closed, whole (as `status` reads it: the result leaves out the
    event's properties)."""
    await h.result()
    return await h.query(JourneyWorkflow.status)


async def at_node(h: WorkflowHandle[JourneyWorkflow, JourneyState], node: str) -> bool:
    state = await h.query(JourneyWorkflow.status)
    return state.current_node == node


async def test_two_carts_side_by_side_and_a_checkout_ends_only_its_cart(
        ingestion: Ingestion, env: WorkflowEnvironment, store: Store, data_dir: Path) -> None:
    one = await track(ingestion, "ada", "Checkout Started", cart_id=1, total=30)
    two = await track(ingestion, "ada", "Checkout Started", "cart-2", cart_id="2", total=45)
    assert seen(one) == [("journey/checkout-per-cart/ada/1", "started")]
    assert seen(two) == [("journey/checkout-per-cart/ada/2", "started")]
    again = await track(ingestion, "ada", "Checkout Started", cart_id=1, total=31)
    assert seen(again) == [("journey/checkout-per-cart/ada/1", "signalled")]  # its own instance

    done = await track(ingestion, "ada", "Checkout Completed", cart_id=2, total=45)
    assert seen(done) == [("journey/checkout-per-cart/ada/2", "signalled")]
    cart1, cart2 = (handle(env, CART_JOURNEY, "ada", key) for key in ("1", "2"))
    state = await closed(cart2)
    assert (state.status, state.exit_reason) == ("exited", "exit event 'Checkout Completed'")
    assert state.converted == "Checkout Completed"
    # Its own entry event: history names it, its receipt keeps its properties.
    assert state.event is not None and state.event.id == "cart-2"
    kept = store.kept_event(CART_JOURNEY, "ada", "cart-2")
    assert kept is not None and kept["properties"]["cart_id"] == "2"
    assert (await cart1.describe()).status == WorkflowExecutionStatus.RUNNING
    assert await at_node(cart1, "checkout-started")  # still in its inaction window
    assert (await cart1.query(JourneyWorkflow.status)).converted is None

    [journey] = [j for j in ingestion.catalog.journeys if j.id == CART_JOURNEY]
    rows = await user_status(env.client, [journey], "ada", QUEUE, store=store)
    assert [(r.key, r.status, r.outcome) for r in rows] == [
        ("1", "running", "running"), ("2", "completed", "exited")]

    async def visible() -> list[tuple[str | None, str]]:  # without a store: from visibility
        found = await user_status(env.client, [journey], "ada", QUEUE)
        return [(r.key, r.status) for r in found] if len(found) == 2 else []
    assert await eventually(visible) == [("1", "running"), ("2", "completed")]
    # ... and as `starter.py status ada --json` prints it, from the same store.
    cli = run_cli(env, data_dir, QUEUE, "status", "ada", "--json", "--journeys", str(ingestion.folder))
    assert cli.returncode == 0, cli.stderr
    shown = [(r["journey_id"], r["key"], r["workflow_id"]) for r in json.loads(cli.stdout)]
    assert (CART_JOURNEY, "1", "journey/checkout-per-cart/ada/1") in shown
    assert (CART_JOURNEY, "2", "journey/checkout-per-cart/ada/2") in shown

    await record_keyed_history(cart2)


async def record_keyed_history(h: WorkflowHandle[JourneyWorkflow, JourneyState]) -> None:
    """A keyed instance's history for the replay test (JOURNEYS_RECORD_HISTORIES=1 rewrites)."""
    path = HISTORIES / "keyed-exit-one-cart.json"
    if os.environ.get("JOURNEYS_RECORD_HISTORIES") or not path.exists():
        path.write_text((await h.fetch_history()).to_json())


async def test_an_exit_without_the_key_ends_every_cart(ingestion: Ingestion,
                                                       env: WorkflowEnvironment) -> None:
    for cart in ("a", "b"):
        await track(ingestion, "bob", "Checkout Started", cart_id=cart, total=10)
    routed = await track(ingestion, "bob", "Account Deleted")
    assert seen(routed) == [("journey/checkout-per-cart/bob/a", "signalled"),
                            ("journey/checkout-per-cart/bob/b", "signalled")]
    for cart in ("a", "b"):
        state = await closed(handle(env, CART_JOURNEY, "bob", cart))
        assert state.exit_reason == "exit event 'Account Deleted'"
    # Both have ended: the next keyless event reaches nobody (NOT_FOUND is no failure).
    assert await track(ingestion, "bob", "Account Deleted") == []


async def test_an_event_without_the_key_mid_journey_reaches_every_cart(
        ingestion: Ingestion, env: WorkflowEnvironment) -> None:
    for cart in ("x", "y"):
        await track(ingestion, "cy", "Cart Started", cart_id=cart)
    x, y = handle(env, "opened-per-cart", "cy", "x"), handle(env, "opened-per-cart", "cy", "y")
    assert await eventually(lambda: at_node(x, "wait-open"))
    assert await eventually(lambda: at_node(y, "wait-open"))
    routed = await track(ingestion, "cy", "Opened App", screen="cart")
    assert {r.action for r in routed} == {"signalled"} and len(routed) == 2
    for h in (x, y):
        assert await eventually(partial(at_node, h, "rest"))
        state = await h.query(JourneyWorkflow.status)
        assert state.path == ["started", "wait-open", "push-opened", "rest"]
        assert state.event and state.event.name == "Opened App"

    # With the key, only its cart moves on.
    for cart in ("x", "y"):
        await track(ingestion, "dee", "Cart Started", cart_id=cart)
    dx, dy = handle(env, "opened-per-cart", "dee", "x"), handle(env, "opened-per-cart", "dee", "y")
    assert await eventually(lambda: at_node(dy, "wait-open"))
    routed = await track(ingestion, "dee", "Opened App", cart_id="x")
    assert seen(routed) == [("journey/opened-per-cart/dee/x", "signalled")]
    assert await eventually(lambda: at_node(dx, "rest"))
    assert await at_node(dy, "wait-open")
    await track(ingestion, "dee", "Cart Emptied")  # keyless: the exit of both
    assert {(await closed(h)).exit_reason for h in (dx, dy)} == {"exit event 'Cart Emptied'"}


async def test_an_entry_without_its_key_starts_nothing(ingestion: Ingestion, store: Store,
                                                      env: WorkflowEnvironment, data_dir: Path) -> None:
    routed = await track(ingestion, "eve", "Cart Started", event_id="no-key")
    [refused] = routed
    assert refused.action == "failed"
    assert refused.error == ("properties.cart_id: missing (the key of a journey 'Cart Started' "
                             "starts): nothing was started")
    assert refused.problem == "request" and "opened-per-cart" not in refused.error
    [bad] = await track(ingestion, "eve", "Cart Started", cart_id=["a", "b"])
    assert bad.action == "failed" and bad.problem == "request"
    assert bad.error == "properties.cart_id is list: a key is a text or a number"
    [opened] = [j for j in ingestion.catalog.journeys if j.id == "opened-per-cart"]
    assert instances(store, opened, "eve") == []
    # A refused event may come again (its receipt was never settled), and is refused again.
    assert [r.action for r in await track(ingestion, "eve", "Cart Started", event_id="no-key")] == [
        "failed"]
    # As `starter.py event` says it: the journey failed, exit status 1; the commands of
    # docs/journeys/format.md (Keyed journeys).
    cli = run_cli(env, data_dir, QUEUE, "event", "eve", "Checkout Started", "--journeys",
                  str(ingestion.folder))
    assert cli.returncode == 1 and "properties.cart_id: missing" in cli.stdout
    assert cli.stderr.splitlines()[-1] == (
        "not routed: event " + cli.stderr.split("not routed: event ")[-1].split(" ")[0]
        + " of eve to checkout-per-cart: properties.cart_id: missing (the key of a journey "
        "'Checkout Started' starts): nothing was started")
    cli = run_cli(env, data_dir, QUEUE, "event", "eve", "Checkout Started", "--props",
                  '{"cart_id": 1, "total": 30}', "--journeys", str(ingestion.folder))
    assert cli.returncode == 0 and "journey/checkout-per-cart/eve/1" in cli.stdout, cli.stderr


@pytest.mark.parametrize(("first", "then", "other"), [
    (2, 2.0, "2.0"), (7.0, "7", 7.5), (-3, -3.0, "-3.00"), (10**20, 1e20, "1e+20")])
async def test_a_number_is_one_key_whatever_its_notation(
        ingestion: Ingestion, env: WorkflowEnvironment, first: Any, then: Any, other: Any) -> None:
    """``cart_id`` 2, 2.0 and "2" reach one instance; a text keeps its own (another key)."""
    user = f"num-{uuid.uuid4().hex[:8]}"
    [entered] = await track(ingestion, user, "Cart Started", cart_id=first)
    assert entered.action == "started"
    [again] = await track(ingestion, user, "Cart Started", cart_id=then)
    assert (again.workflow_id, again.action) == (entered.workflow_id, "signalled")
    [another] = await track(ingestion, user, "Cart Started", cart_id=other)
    assert another.action == "started" and another.workflow_id != entered.workflow_id
    assert len({r.workflow_id for r in (entered, another)}) == 2


async def test_an_event_id_counts_once_per_instance(ingestion: Ingestion,
                                                    env: WorkflowEnvironment) -> None:
    await track(ingestion, "fay", "Cart Started", event_id="fay-start-1", cart_id="1")
    assert seen(await track(ingestion, "fay", "Cart Started", event_id="fay-start-1", cart_id="1")) == [
        ("journey/opened-per-cart/fay/1", "duplicate")]
    assert seen(await track(ingestion, "fay", "Cart Started", event_id="fay-start-2", cart_id="2")) == [
        ("journey/opened-per-cart/fay/2", "started")]
    assert len(await track(ingestion, "fay", "Opened App", event_id="fay-open")) == 2
    assert [r.action for r in await track(ingestion, "fay", "Opened App", event_id="fay-open")] == [
        "duplicate"]
    state = await handle(env, "opened-per-cart", "fay", "2").query(JourneyWorkflow.status)
    assert state.seen_event_ids.count("fay-open") <= 1


async def test_the_journey_key_search_attribute(ingestion: Ingestion, env: WorkflowEnvironment) -> None:
    await track(ingestion, "gus", "Checkout Started", cart_id="c/42", total=5)
    wid = instance_id(CART_JOURNEY, "gus", "c/42")
    assert wid == "journey/checkout-per-cart/gus/c%2F42"
    description = await env.client.get_workflow_handle(wid).describe()
    assert description.typed_search_attributes.get(JOURNEY_KEY) == "c/42"

    async def found() -> list[str]:
        return [w.id async for w in env.client.list_workflows(
            f'JourneyId = "{CART_JOURNEY}" AND JourneyKey = "c/42"')]
    assert await eventually(found) == [wid]

    # An unkeyed journey's start sets no JourneyKey (a cluster without it still runs them).
    unkeyed = Journey.model_validate({**OPENED, "id": "unkeyed", "entry_key": None})
    router = Router(env.client, QUEUE, receipts=ingestion.store)
    [started] = await router.route_event([unkeyed], Event(
        id="u-1", name="Cart Started", user_id="gus", properties={"cart_id": "1"},
        time=datetime.now(UTC)))
    assert (started.workflow_id, started.action) == ("journey/unkeyed/gus", "started")
    attributes = (await env.client.get_workflow_handle(started.workflow_id).describe()
                  ).typed_search_attributes
    assert attributes.get(JOURNEY_KEY) is None


def test_instance_ids_cannot_be_confused() -> None:
    assert instance_id("j", "a/b") == workflow_id("j", "a/b") == "journey/j/a/b"  # as before
    pairs = [("a", "b/c"), ("a/b", "c"), ("a%2Fb", "c"), ("a", "b%2Fc"), ("a", "b%c")]
    ids = [instance_id("j", user, key) for user, key in pairs]
    assert len(set(ids)) == len(ids)
    for (user, key), wid in zip(pairs, ids, strict=True):
        assert key_of_instance("j", user, wid) == key
        assert all(key_of_instance("j", other, wid) is None for other, _ in pairs if other != user)
    assert key_of_instance("j", "a", "journey/j/a") is None


# --- the validator --------------------------------------------------------------------------

def _keyed(entry_key: str, **changes: Any) -> dict[str, Any]:
    return {**OPENED, "entry_key": entry_key, **changes}


def codes(doc: dict[str, Any], catalog: dict[str, EventSchema] | None = None) -> list[tuple[str, str]]:
    loaded = load_document(doc, "keyed.yaml", catalog)
    return [(p.code, p.message) for p in validate_loaded(loaded)]


def test_the_validator_refuses_an_entry_key_the_entry_event_lacks() -> None:
    assert codes(_keyed("cart_id")) == []
    assert codes(_keyed("basket_id")) == [(
        "unknown-entry-key",
        "entry_key 'basket_id' is not a property of 'Cart Started' (its properties: cart_id)")]


def test_an_entry_key_is_checked_against_the_folders_catalog() -> None:
    doc = _keyed("cart_id", events={})
    [(code, message)] = codes(doc)  # no schema at all: refused, with what to do
    assert code == "unknown-entry-key" and "has no schema" in message
    assert codes(doc, {"Cart Started": EventSchema(properties={"cart_id": "any"})}) == []
    assert [c for c, _ in codes(doc, {"Cart Started": EventSchema(properties={"id": "any"})})] == [
        "unknown-entry-key"]


def test_an_entry_key_needs_an_entry_event() -> None:
    doc = {"id": "birthday-keyed", "name": "b", "entry": "day", "entry_key": "cart_id",
           "nodes": [{"id": "day", "type": "date_time", "profile_property": "birthday",
                      "next": "hi"},
                     {"id": "hi", "type": "engagement", "channel": "sms", "message": {"text": "hi"}}]}
    [(code, message)] = codes(doc)
    assert code == "unknown-entry-key" and "has none (a profile date)" in message


def test_the_examples_of_the_rule() -> None:
    [(_, valid)] = validate_paths([EXAMPLES / f"{CART_JOURNEY}.yaml"])
    assert valid == []
    [(_, problems)] = validate_paths([EXAMPLES / "invalid" / "unknown-entry-key.yaml"])
    assert [(p.code, p.field) for p in problems] == [("unknown-entry-key", "entry_key")]


async def test_an_entry_the_router_failed_to_record_is_recorded_by_its_next_keyed_event(
        ingestion: Ingestion, env: WorkflowEnvironment, store: Store) -> None:
    """The start went through but its entry row did not (a database hiccup): the next event with
    the key finds the instance running and records it, so a keyless exit still reaches it."""
    await track(ingestion, "ivy", "Checkout Started", cart_id=7, total=10)
    wid = instance_id(CART_JOURNEY, "ivy", "7")
    with store.engine.begin() as conn:
        conn.execute(entries.delete().where(entries.c.workflow_id == wid))
    again = await track(ingestion, "ivy", "Checkout Started", cart_id=7, total=11)
    assert seen(again) == [(wid, "signalled")]
    gone = await track(ingestion, "ivy", "Account Deleted")  # no cart_id: every cart of ivy
    assert seen(gone) == [(wid, "signalled")]
    assert (await closed(handle(env, CART_JOURNEY, "ivy", "7"))).exit_reason == (
        "exit event 'Account Deleted'")
