"""An identify that sets a date property a running journey waits on to something that is not a
date (``"n/a"``, ``30 February``, a number, an empty text, a list): the journey keeps waiting on
the date it had and the worker logs a warning naming the journey, user and property (never the
value). A later real date still moves the wait. Through ``Ingestion.identify``, the path of the
HTTP API's identify, on the time-skipping server."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs
from temporalio.testing import WorkflowEnvironment

from ingestion.pipeline import Ingestion
from ingestion.router import Router
from journeys.store.database import Store
from tests.helpers.support import ROOT, Harness, examples

QUEUE = "profile-dates-kept"


@pytest.fixture
def journeys(env: WorkflowEnvironment, store: Store, worker: None) -> Harness:
    return Harness(env, store, [examples()["birthday"]], QUEUE)


@pytest.fixture
def ingestion(env: WorkflowEnvironment, store: Store, tmp_path: Path) -> Ingestion:
    shutil.copy(ROOT / "examples" / "birthday.yaml", tmp_path / "birthday.yaml")
    return Ingestion(Router(env.client, QUEUE, receipts=store, search_attributes=False), store, tmp_path)


def day_of(moment: datetime) -> str:
    return f"1990-{moment:%m-%d}"


@pytest.mark.parametrize("value", ["n/a", "1990-02-30", 42, "", ["1990-01-01"], {"d": 1}],
                         ids=["text", "no-such-day", "number", "empty", "list", "object"])
async def test_a_non_date_keeps_the_date_the_wait_had(journeys: Harness, ingestion: Ingestion,
                                                      value: Any) -> None:
    user = f"kit-{type(value).__name__}-{value!s:.8}"
    now = (await journeys.env.get_current_time()).astimezone(UTC)
    first = now + timedelta(days=30)
    routed = await ingestion.identify(user, {"first_name": "Kit", "birthday": day_of(first)})
    assert [(r.journey_id, r.action) for r in routed] == [("birthday", "started")]
    await journeys.env.sleep(timedelta(days=1))

    with capture_logs(processors=[merge_contextvars]) as logs:
        routed = await ingestion.identify(user, {"birthday": value})
        assert [(r.journey_id, r.action) for r in routed] == [("birthday", "signalled")]
        state = await journeys.result("birthday", user)
    assert state.status == "finished" and state.exit_reason is None
    history = await journeys.handle("birthday", user).fetch_history()
    sent = history.events[-1].event_time.ToDatetime().replace(tzinfo=UTC)
    assert (sent.month, sent.day, sent.hour) == (first.month, first.day, 9)  # the date it had
    [kept] = [line for line in logs if "not a date" in line["event"]]
    assert kept["log_level"] == "warning" and kept["property"] == "birthday"
    assert kept["journey_id"] == "birthday" and kept["user_id"] == user
    assert str(value) not in {str(v) for k, v in kept.items() if k != "event"} or value == ""


async def test_a_real_date_after_a_non_date_still_moves_the_wait(journeys: Harness,
                                                                 ingestion: Ingestion) -> None:
    now = (await journeys.env.get_current_time()).astimezone(UTC)
    first, moved = now + timedelta(days=30), now + timedelta(days=6)
    await ingestion.identify("lou", {"birthday": day_of(first)})
    await journeys.env.sleep(timedelta(days=1))
    await ingestion.identify("lou", {"birthday": "soon"})
    await journeys.env.sleep(timedelta(days=1))
    await ingestion.identify("lou", {"birthday": day_of(moved)})
    state = await journeys.result("birthday", "lou")
    assert state.status == "finished"
    history = await journeys.handle("birthday", "lou").fetch_history()
    sent = history.events[-1].event_time.ToDatetime().replace(tzinfo=UTC)
    assert (sent.month, sent.day, sent.hour) == (moved.month, moved.day, 9)
    await journeys.record_history("profile-date-kept", "birthday", "lou")
