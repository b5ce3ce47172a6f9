"""Journey triggers (issue 18, part 4): a ``trigger_journey`` node enters the user into another
journey of the folder with its personalization event, once per entry; the validator refuses a
target that is missing, that does not enter on that event, or that leads back. On the
time-skipping server, through the router and the worker's trigger activity."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.models import TriggerJourneyInput
from ingestion.triggers import Triggers
from journeys.events import Event
from journeys.language.models import Journey
from journeys.store.database import Store
from journeys.validation.validate import validate_paths
from tests.helpers.support import Harness, running_worker

QUEUE = "triggers"


def cart(target: str = "followup", event: str = "Added To Cart") -> dict[str, Any]:
    return {"id": "cart", "name": "Cart", "entry": "added", "nodes": [
        {"id": "added", "type": "action", "event": event, "next": "push-now"},
        {"id": "push-now", "type": "engagement", "channel": "push",
         "message": {"title": "Your cart", "body": "{{ event.product }} is waiting"}, "next": "hand-over"},
        {"id": "hand-over", "type": "trigger_journey", "journey": target}]}


FOLLOWUP: dict[str, Any] = {"id": "followup", "name": "Follow-up", "entry": "added", "nodes": [
    {"id": "added", "type": "action", "event": "Added To Cart", "next": "wait"},
    {"id": "wait", "type": "delay", "duration": "1h", "next": "email-later"},
    {"id": "email-later", "type": "engagement", "channel": "email",
     "message": {"subject": "Still want the {{ event.product }}?", "text": "It is in your cart."}}]}


def folder(tmp: Path, *journeys: dict[str, Any]) -> Path:
    for journey in journeys:
        (tmp / f"{journey['id']}.json").write_text(json.dumps(journey))
    return tmp


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return folder(tmp_path_factory.mktemp("catalog"), cart(), FOLLOWUP)


@pytest.fixture(scope="module")
async def journeys(env: WorkflowEnvironment, store: Store, catalog: Path) -> AsyncIterator[Harness]:
    async with running_worker(env.client, store, QUEUE, catalog_dir=catalog):
        yield Harness(env, store, [Journey.model_validate(cart())], QUEUE)


async def test_the_node_enters_the_user_into_the_other_journey_with_its_event(journeys: Harness) -> None:
    await journeys.send("ada", "Added To Cart", {"product": "iPhone 14"}, event_id="cart-1")
    state = await journeys.result("cart", "ada")
    assert state.path == ["added", "push-now", "hand-over"]
    followed = await journeys.result("followup", "ada")
    assert followed.path == ["added", "wait", "email-later"]
    assert [m.event_id for m in followed.messages] == ["cart-1"]
    [email] = [r for r in journeys.outbox("ada") if r.journey_id == "followup"]
    # The same event personalizes it: entered by the activity's router, whose claim keeps the
    # event, and read from there by the send (interpreter 4).
    assert email.content["subject"] == "Still want the iPhone 14?"
    history = await journeys.handle("followup", "ada").fetch_history()
    [send] = [json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data)
              for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert send["kept_event"] == "cart-1" and "event" not in send
    await journeys.record_history("trigger-journey", "cart", "ada")


async def test_a_retry_enters_once(journeys: Harness, store: Store, catalog: Path,
                                   env: WorkflowEnvironment) -> None:
    """The activity again with the same event (a retry after its answer was lost): a duplicate."""
    event = Event(id="cart-1", name="Added To Cart", user_id="ada", properties={"product": "iPhone 14"},
                  time=datetime(2026, 12, 1, tzinfo=UTC))
    triggers = Triggers(store, catalog, search_attributes=False)
    again = await ActivityEnvironment(client=env.client).run(
        triggers.trigger_journey,
        TriggerJourneyInput(journey_id="followup", user_id="ada", node_id="hand-over", event=event))
    assert again == "duplicate"
    missing = await ActivityEnvironment(client=env.client).run(
        triggers.trigger_journey,
        TriggerJourneyInput(journey_id="gone", user_id="ada", node_id="hand-over", event=event))
    assert missing == "not entered: journey 'gone' is not in the catalog"


@pytest.mark.parametrize("journeys_in, code, says", [
    ([cart(target="nowhere")], "unknown-journey", "'nowhere' is no valid journey of this folder"),
    ([cart(), {**FOLLOWUP, "nodes": [{**FOLLOWUP["nodes"][0], "event": "Viewed"}, *FOLLOWUP["nodes"][1:]]}],
     "trigger-event", "journey 'followup' enters on 'Viewed'; here the event is Added To Cart"),
    ([cart(), {**FOLLOWUP, "nodes": [*FOLLOWUP["nodes"][:2], {**FOLLOWUP["nodes"][2], "next": "back"},
                                     {"id": "back", "type": "trigger_journey", "journey": "cart"}]}],
     "trigger-cycle", "journey 'followup' triggers, in the end, 'cart' again"),
])
def test_the_validator_refuses_a_trigger_that_cannot_work(
        tmp_path: Path, journeys_in: list[dict[str, Any]], code: str, says: str) -> None:
    results = validate_paths([folder(tmp_path, *journeys_in)])
    found = [(p.node, p.field, p.code, p.message) for _, problems in results for p in problems]
    assert ("hand-over", "journey", code, says) in found, found
