"""A long wait that collects many events goes on in a fresh run: same wait, nothing lost.

Runs on a dev server told to suggest continue-as-new after 40 history events (the default is
thousands), so a few dozen events reach the limit.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from activities.models import message_key
from journeys.events import Event, tracking_id, workflow_id
from journeys.language.models import Journey
from journeys.store.database import Store
from tests.helpers.support import Harness, dev_server, eventually, running_worker
from workflows.journey import JourneyWorkflow
from workflows.models import JourneyInput, JourneyState

QUEUE = "can-test"
WISHLIST = Journey.model_validate({
    "id": "wishlist-wait", "name": "Wishlist wait", "entry": "viewed", "goals": ["Charged"],
    "nodes": [
        {"id": "viewed", "type": "action", "event": "Viewed Product", "next": "wished"},
        {"id": "wished", "type": "action", "event": "Added To Wishlist", "within": "10m",
         "where": {"category": "phones"}, "next": "push"},
        {"id": "push", "type": "engagement", "channel": "push",
         "message": {"body": "{{ event.product_name }} is on your wishlist"}},
    ]})


@pytest.fixture(scope="module")
async def journeys() -> AsyncIterator[Harness]:
    store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='journeys-can-')}/journeys.db")
    async with (dev_server("limit.historyCount.suggestContinueAsNew=40") as env,
                running_worker(env.client, store, QUEUE)):
        yield Harness(env, store, [WISHLIST], QUEUE, search_attributes=True)


async def test_many_events_during_a_wait_continue_as_new_and_the_wait_goes_on(journeys: Harness) -> None:
    await journeys.send("max", "Viewed Product", {"product_name": "Watch"}, event_id="view-1")
    first_run = (await journeys.handle("wishlist-wait", "max").describe()).run_id
    for i in range(30):  # events the wait does not take: other categories, goal events
        name, props = ("Charged", {}) if i % 5 == 0 else ("Added To Wishlist", {"category": "books"})
        await journeys.send("max", name, {**props, "product_name": f"Book {i}"}, event_id=f"noise-{i}")
    await journeys.send("max", "Added To Wishlist", {"category": "books"}, event_id="noise-3")  # a duplicate
    # The new run is waiting at the same node, with what was left of the 10 minutes.
    timers = await eventually(lambda: _fresh_run_timers(journeys, first_run))
    assert timers and timers[0] < timedelta(minutes=10)
    await journeys.send("max", "Added To Wishlist", {"category": "phones", "product_name": "Pixel 9"},
                        event_id="wish-phone")
    state = await journeys.result("wishlist-wait", "max")

    old = journeys.client.get_workflow_handle(journeys.handle("wishlist-wait", "max").id, run_id=first_run)
    assert (await old.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert state.path == ["viewed", "wished", "push"]  # the wait was not entered twice
    assert [(m.node_id, m.event_id) for m in state.messages] == [("push", "wish-phone")]
    assert state.goals_reached == ["Charged"]
    await journeys.record_history("continue-as-new-mid-wait", "wishlist-wait", "max", run_id=first_run)
    await journeys.record_history("continue-as-new-resumed", "wishlist-wait", "max")
    [row] = journeys.outbox("max")
    assert row.content["body"] == "Pixel 9 is on your wishlist"


async def _fresh_run_timers(journeys: Harness, first_run: str | None, journey_id: str = "wishlist-wait",
                            user: str = "max") -> list[timedelta]:
    handle = journeys.handle(journey_id, user)
    if (await handle.describe()).run_id == first_run:
        return []
    history = await handle.fetch_history()
    return [e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
            for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]



async def test_a_resumed_wait_takes_an_event_from_its_first_task(journeys: Harness) -> None:
    # What a run that went on as new mid-wait starts with, and the awaited event arriving
    # before its first task (signal-with-start puts it there).
    viewed = Event(id="view-2", name="Viewed Product", user_id="yan", properties={},
                   time=datetime.now(UTC))
    wished = viewed.model_copy(update={"id": "wish-2", "name": "Added To Wishlist",
                                       "properties": {"category": "phones", "product_name": "Pixel 9"}})
    carried = JourneyState(event=viewed, current_node="wished", path=["viewed", "wished"],
                           run_key="k", entered_at=datetime.now(UTC), seen_event_ids=["view-2"],
                           next_wake=datetime.now(UTC) + timedelta(minutes=5),
                           waiting_for="Added To Wishlist", waiting_where={"category": "phones"})
    await journeys.client.start_workflow(
        JourneyWorkflow.run, JourneyInput(journey=WISHLIST, user_id="yan", resume_node="wished",
                                          resume_mid_wait=True, carried=carried, search_attributes=False),
        id=workflow_id("wishlist-wait", "yan"), task_queue=QUEUE,
        start_signal="event", start_signal_args=[wished])
    state = await journeys.result("wishlist-wait", "yan")
    assert [(m.node_id, m.event_id) for m in state.messages] == [("push", "wish-2")]


NUDGE = Journey.model_validate({
    "id": "nudge-engaged", "name": "Nudge, then what they did with it", "entry": "viewed",
    "nodes": [
        {"id": "viewed", "type": "action", "event": "Viewed Product", "next": "push"},
        {"id": "push", "type": "engagement", "channel": "push", "message": {"body": "Look"},
         "on_engagement": {"clicked": "thanks", "within": "10m", "otherwise": "missed"}},
        {"id": "thanks", "type": "engagement", "channel": "push", "message": {"body": "Thanks"}},
        {"id": "missed", "type": "engagement", "channel": "push", "message": {"body": "Missed"}},
    ]})


async def test_an_engagement_wait_goes_on_as_new_without_sending_again(journeys: Harness) -> None:
    """Many events during on_engagement's wait: the fresh run waits on (no second send), and
    this message's click, when it comes, takes the clicked path."""
    nudge = Harness(journeys.env, journeys.store, [NUDGE], QUEUE, search_attributes=True)
    await nudge.send("ivy", "Viewed Product", event_id="ivy-view")
    handle = nudge.handle("nudge-engaged", "ivy")
    first_run = (await handle.describe()).run_id

    async def waiting() -> JourneyState | None:
        state = await handle.query(JourneyWorkflow.status)
        return state if state.waiting_for == "Message Clicked" else None
    state = await eventually(waiting)
    assert state is not None
    mine = tracking_id(message_key(handle.id, state.run_key, "push"))
    for i in range(30):  # clicks of other messages: not this one's
        await nudge.send("ivy", "Message Clicked", {"message_id": f"{i:032x}"}, event_id=f"other-{i}")
    assert await eventually(lambda: _fresh_run_timers(nudge, first_run, "nudge-engaged", "ivy"))
    await nudge.send("ivy", "Message Clicked", {"message_id": mine}, event_id=f"clicked-{mine}")
    done = await nudge.result("nudge-engaged", "ivy")
    assert done.path == ["viewed", "push", "thanks"]
    assert [(m.node_id, m.status) for m in done.messages] == [("push", "delivered"), ("thanks", "delivered")]
    assert [r.node_id for r in journeys.outbox("ivy")] == ["push", "thanks"]  # the push went out once
