"""Profile dates that change (issue 9, section 6): a running birthday or renewal journey resolves
its moment again when the user's date property changes (``starter.py profile``, an identify),
instead of keeping the date it resolved at entry. On the time-skipping server."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from ingestion.router import Router
from journeys.store.database import Store
from tests.helpers.support import Harness, examples

QUEUE = "profile-dates"


@pytest.fixture
def journeys(env: WorkflowEnvironment, store: Store, worker: None) -> Harness:
    return Harness(env, store, [examples()["birthday"]], QUEUE)


async def test_a_birthday_moved_earlier_moves_the_greeting(journeys: Harness) -> None:
    now = (await journeys.env.get_current_time()).astimezone(UTC)
    first, moved = now + timedelta(days=30), now + timedelta(days=5)
    journeys.store.update_profile("max", {"first_name": "Max", "birthday": f"1990-{first:%m-%d}"})
    router = Router(journeys.client, QUEUE, search_attributes=False)
    routed = await router.route_profile(journeys.journeys, "max", ["birthday"])
    assert [(r.journey_id, r.action) for r in routed] == [("birthday", "started")]
    await journeys.env.sleep(timedelta(days=1))

    journeys.store.update_profile("max", {"birthday": f"1990-{moved:%m-%d}"})
    routed = await router.route_profile(journeys.journeys, "max", ["birthday"])
    assert [(r.journey_id, r.action) for r in routed] == [("birthday", "signalled")]
    # A profile change that is not the date leaves the wait as it is (not even a signal).
    assert await router.route_profile(journeys.journeys, "max", ["first_name"]) == []

    state = await journeys.result("birthday", "max")
    assert state.status == "finished"
    history = await journeys.handle("birthday", "max").fetch_history()
    sent = history.events[-1].event_time.ToDatetime().replace(tzinfo=UTC)
    assert (sent.month, sent.day, sent.hour) == (moved.month, moved.day, 9)  # not the 30-day date
    first_wait, second_wait = await journeys.timers("birthday", "max")  # the wait, started again
    assert timedelta(days=29) < first_wait <= timedelta(days=31)
    assert timedelta(days=3) < second_wait <= timedelta(days=5)  # 4 days less the time of day
    await journeys.record_history("profile-date-moved", "birthday", "max")
