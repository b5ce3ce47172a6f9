"""Every recorded scenario history must replay on the current workflow code.

A change to the interpreter that alters its commands without ``workflow.patched`` fails here.
Rewrite the histories (only for a deliberate, patched change) with
``JOURNEYS_RECORD_HISTORIES=1 pytest tests/test_workflow.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from connection.converter import data_converter
from journeys.events import instance_id
from service.runtime import sandbox_runner
from tests.helpers.support import recorded_versions
from workflows.audience import AudienceWorkflow
from workflows.journey import JourneyWorkflow
from workflows.models import JourneyInput

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_every_scenario_has_a_history() -> None:
    names = {path.stem for path in HISTORIES}
    assert {"abandoned-cart", "abandoned-cart-converted", "abandoned-cart-exit-during-delay",
            "engagement-after-action", "delays-15h", "controller-between", "two-action-nodes",
            "onboarding-inaction", "flight-reminder", "birthday",
            # with search attributes (JourneyNode at the waits), on the dev server
            "devserver-two-action-nodes",
            # a run that went on as new in the middle of a wait, and the run that went on
            "continue-as-new-mid-wait", "continue-as-new-resumed",
            # the user left during a provider outage, or during an attempt; the journey timed
            # out during an outage
            "exit-during-outage", "exit-during-attempt", "timeout-during-outage",
            # a message over its channel's limit fails, the journey goes on (small results)
            "message-failed-too-large",
            # quiet hours: a push held until 08:00 Paris across the spring change, a push
            # dropped in quiet hours that takes its outcome path; outcome paths; a capped push
            "quiet-hours-delay", "quiet-hours-drop", "outcome-paths", "caps-capped",
            # a controller activity that keeps failing ends with the journey (timeout, exit)
            "controller-fails-until-timeout", "controller-fails-until-exit",
            # entered by a start with the event in its input, no start signal (release 0.3)
            "entry-in-input",
            # a goal recorded as the entry's conversion, a time-out recorded (record-outcomes)
            "conversion-recorded", "timed-out-recorded", "end-recorded",
            # an IntelliNODE path chosen by the choose_path activity (intellinode-choice)
            "intellinode-chosen",
            # an operator took the user out through the exit update, mid-outage
            "exited-by-update",
            # a profile date changed during its wait: resolved again (profile-dates)
            "profile-date-moved",
            # a keyed journey's instance (entry_key in its input), ended by its cart's exit event
            "keyed-exit-one-cart",
            # interpreter 2: the journey by version, no patch markers, the end recorded by
            # the last send; a conversion and an exit event; a time-out during an outage
            "interpreter-2-abandoned-cart", "interpreter-2-converted",
            "interpreter-2-timeout-during-outage",
            # interpreter 3: sends by run key, a result without the seen event ids
            "interpreter-3-abandoned-cart", "interpreter-3-converted",
            "interpreter-3-timeout-during-outage",
            # interpreter 4: the entry event by its id (kept with its receipt), no event in
            # the result
            "interpreter-4-abandoned-cart", "interpreter-4-converted",
            "interpreter-4-timeout-during-outage",
            # a marketing email to a user unsubscribed from email takes its unsubscribed path
            "unsubscribed-path",
            # an email's click (through serve's redirect) takes on_engagement's clicked path
            "engagement-clicked",
            # a trigger_journey node entered the user into another journey (an activity)
            "trigger-journey",
            # an audience journey's occurrence paged its segment, and a user it entered
            "audience-occurrence", "segment-entry",
            # an occurrence known by its chain's first run too (audience-occurrence-by-run)
            "audience-occurrence-by-run",
            # a send of a node with content variants: the variant in its result
            "content-variant"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    recorded_versions()  # the definitions runs of interpreter 2 entered by version
    replayer = Replayer(workflows=[JourneyWorkflow, AudienceWorkflow], data_converter=data_converter,
                        workflow_runner=sandbox_runner())
    history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    history = WorkflowHistory(recorded_id(history), history.events)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


def recorded_id(history: WorkflowHistory) -> str:
    """The workflow id the run had (its input names its journey, user and key): a run's choices
    may depend on it (an engagement wait listens for its message's id, made from it)."""
    started = history.events[0].workflow_execution_started_event_attributes
    if started.workflow_type.name != "JourneyWorkflow":  # (an audience's run reads no id)
        return history.workflow_id
    given = JourneyInput.model_validate_json(started.input.payloads[0].data)
    journey_id = given.journey_id or (given.journey.id if given.journey else "unknown")
    return instance_id(journey_id, given.user_id, given.entry_key)
