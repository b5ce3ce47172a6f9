"""Workflow code: an entry's conversion (the first goal event, within ``goal_within``), its
time-out and its end, recorded in the store by the ``record_outcome`` activity, once per entry.

Counting costs no activity per node: one activity when a user converts, one when a journey
times out, and a local one when it ends (the nodes it went through, for the funnel).
Histories from before this existed replay unchanged (``workflow.patched``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.models import WalkEnd
    from journeys.events import Event
    from journeys.language.models import IntelliNode, Journey
    from journeys.store.outcomes import Outcome, OutcomeKind, TakenPath, held_out
    from workflows.models import JourneyState

#: The patch that brought outcome records in (a new activity, so a new command).
PATCH = "record-outcomes"
#: The patch that records each entry's end (its nodes, why it left): the funnel per node.
ENDS_PATCH = "record-ends"
#: A store that is down delays the record; the journey waits for it at its end.
_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=5))


class Outcomes:
    """One entry's conversion and time-out; ``start`` it when the run begins, ``finish`` at its end."""

    def __init__(self, journey: Journey, user_id: str, state: JourneyState,
                 patched: Callable[[str], bool] = workflow.patched) -> None:
        self.journey, self.user_id, self.state = journey, user_id, state
        self._patched = patched  # workflow.patched, or True for a run of interpreter 2
        self._task: asyncio.Task[None] | None = None

    def goal(self, event: Event) -> None:
        """A goal event of this user (from the signal handler): the entry converts, once."""
        state, within = self.state, self.journey.goal_within
        if state.converted or event.name not in self.journey.goals:
            return
        if within is not None and state.entered_at and workflow.now() - state.entered_at > within:
            return
        state.converted, state.converted_node, state.converted_at = (
            event.name, state.current_node, workflow.now())

    def enter(self) -> None:
        """A new entry: is this user in the control group (decided once, kept in the state)?"""
        self.state.held_out = held_out(self.journey.id, self.user_id, self.journey.control_percent)

    def start(self) -> None:
        """Record the conversion as soon as there is one (a run that went on as new carries it)."""
        self._task = asyncio.create_task(self._record_conversion())

    def walk_end(self, with_run_key: bool = True) -> WalkEnd:
        """The end record of a walk that ends after the current node (for its send to record;
        without the run key, which interpreter 3's send carries once for both)."""
        return WalkEnd(run_key=self.state.run_key if with_run_key else "", nodes=list(self.state.path),
                       paths=self._paths())

    async def finish(self, timed_out: bool, end_recorded: bool = False) -> None:
        """Before the run returns: the conversion recorded, the time-out if it timed out, and
        the end unless the last send recorded it."""
        state = self.state
        if self._task is not None:
            if state.converted and not state.conversion_recorded:
                await self._task
            else:
                self._task.cancel()
        if timed_out and self._patched(PATCH):
            await self._record("timed_out")
        if not end_recorded and self._patched(ENDS_PATCH):
            await self._record("ended")

    async def _record_conversion(self) -> None:
        state = self.state
        await workflow.wait_condition(lambda: state.converted is not None)
        if state.conversion_recorded or not self._patched(PATCH):
            return
        await self._record("converted")
        state.conversion_recorded = True

    async def _record(self, kind: OutcomeKind) -> None:
        state, info = self.state, workflow.info()
        converted = kind == "converted"
        outcome = Outcome(
            journey_id=self.journey.id, run_key=state.run_key, kind=kind, user_id=self.user_id,
            workflow_id=info.workflow_id, goal=state.converted if converted else None,
            node_id=state.converted_node if converted else state.current_node,
            paths=self._paths(), held_out=state.held_out,
            at=state.converted_at if converted else workflow.now(),
            reason=state.exit_reason if kind == "ended" else None,
            nodes=list(state.path) if kind == "ended" else None)
        if kind == "ended":  # every journey's last step: a local activity, no task round trip
            await workflow.execute_local_activity(
                "record_outcome", outcome, result_type=bool, summary=f"record {kind}",
                start_to_close_timeout=timedelta(seconds=30), retry_policy=_RETRY)
            return
        await workflow.execute_activity(
            "record_outcome", outcome, result_type=bool, summary=f"record {kind}",
            start_to_close_timeout=timedelta(seconds=30), retry_policy=_RETRY)

    def _paths(self) -> list[TakenPath]:
        """The IntelliNODE paths this user took: each IntelliNODE on their path and what followed."""
        taken, path = [], self.state.path
        for i, node_id in enumerate(path[:-1]):
            node = self.journey.node(node_id)
            if isinstance(node, IntelliNode):
                chosen = next((p for p in node.paths if p.next == path[i + 1]), None)
                taken.append(TakenPath(node=node_id, path=(chosen.name if chosen and chosen.name
                                                           else path[i + 1])))
        return taken
