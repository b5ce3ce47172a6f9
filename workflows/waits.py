"""The journey interpreter's waits: for an event, for a time, up to the journey's timeout, and
going on as new in the middle of a long one. A base class of ``JourneyWorkflow``: workflow code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from journeys.events import Event, engagement_events
    from journeys.language.durations import format_duration
    from journeys.language.models import EngagementNode, Journey, Scalar
    from workflows.models import JourneyInput, JourneyState, details


class Waits:
    """What the waits need of the interpreter's state, and the waits themselves."""

    journey: Journey
    user_id: str
    state: JourneyState
    _input: JourneyInput
    _waiting: tuple[frozenset[str], dict[str, Scalar]] | None
    _caught: Event | None
    _resuming: bool
    _resume_wake: datetime | None

    async def _wait_for(self, name: str, where: dict[str, Scalar], within: timedelta | None,
                        node_id: str) -> Event | None:
        """Wait for an event that arrives from now on; None if the wait ends first."""
        self._listen([name], where)
        limit = f" up to {format_duration(within)}" if within else ""
        return await self._caught_within(within, f"wait{limit} for '{name}' ({node_id})")

    def _listen(self, names: list[str], where: dict[str, Scalar]) -> None:
        """Catch the first event of ``names`` that matches ``where`` from now on (a wait that
        :meth:`_caught_within` ends)."""
        self._waiting = (frozenset(names), where)
        if not self._resuming:  # a run resumed mid-wait may have caught it in its first task
            self._caught = None
        self.state.waiting_for, self.state.waiting_where = names[0], where
        self.state.waiting_any = names if len(names) > 1 else []

    async def _caught_within(self, within: timedelta | None, summary: str) -> Event | None:
        """The event :meth:`_listen` caught, waiting up to ``within``; None if the wait ends first."""
        try:
            await self._sleep(within, summary, until=lambda: self._caught is not None)
        finally:
            self._stop_listening()
        return self._caught

    def _stop_listening(self) -> None:
        """No event is waited for any more (what :meth:`_listen` began)."""
        self._waiting = None
        self.state.waiting_for, self.state.waiting_where, self.state.waiting_any = None, {}, []

    async def _engaged(self, node: EngagementNode) -> str | None:
        """After a delivered message: the path of what the user did with it first (a click or an
        open, as events of its ``message_id``), else ``otherwise`` (or next) after ``within``."""
        engage = node.on_engagement
        assert engage is not None
        paths = engagement_events(node)
        what = " or ".join(name.removeprefix("Message ").lower() for name in paths)
        caught = await self._caught_within(
            engage.within, f"wait up to {format_duration(engage.within)} for {what} ({node.id})")
        if caught is None:
            return engage.otherwise or node.next
        return paths[caught.name]

    async def _sleep(self, duration: timedelta | None, summary: str,
                     until: Callable[[], bool] = lambda: False) -> None:
        """A durable wait that ends early on ``until`` or an exit, and at the journey timeout."""
        state, timeout, left = self.state, duration, self._time_left()
        if left is not None and (timeout is None or left <= timeout):
            timeout = max(left, timedelta(0))
            summary = f"{summary}; journey times out"
        if self._resuming:  # the same wait, on in a new run: keep its wake-up time
            self._resuming = False
            if self._resume_wake is not None:
                timeout = max(self._resume_wake - workflow.now(), timedelta(0))
        state.next_wake = workflow.now() + timeout if timeout is not None else None
        self._details()
        suggested = workflow.info().is_continue_as_new_suggested
        try:
            if timeout is None or timeout > timedelta(0):
                await workflow.wait_condition(
                    lambda: until() or state.exit_reason is not None or suggested(),
                    timeout=timeout, timeout_summary=summary)
            if not until() and not state.exit_reason and suggested():
                # A long wait with many events: go on in a fresh history, the same wait.
                await self._continue_as_new(state.current_node, mid_wait=True)
        except TimeoutError:
            pass
        finally:
            state.next_wake = None
        left = self._time_left()
        if not until() and not state.exit_reason and left is not None and left <= timedelta(0):
            self._leave(self._timeout_reason())

    def _time_left(self) -> timedelta | None:
        """Until the journey's timeout, if it has one."""
        if not (self.journey.timeout and self.state.entered_at):
            return None
        return self.state.entered_at + self.journey.timeout - workflow.now()

    def _timeout_reason(self) -> str:
        return f"journey timeout ({format_duration(self.journey.timeout or timedelta(0))})"

    async def _continue_as_new(self, node_id: str | None, *, mid_wait: bool) -> None:
        """Hand the user over to a fresh run at ``node_id``, with everything that matters."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        carried = self.state.model_copy(deep=True)  # the wait's clean-up must not touch it
        workflow.continue_as_new(self._input.model_copy(update={
            "resume_node": node_id, "resume_mid_wait": mid_wait, "carried": carried,
            "entry_event": None}))

    def _leave(self, reason: str) -> None:
        if not self.state.exit_reason:
            self.state.exit_reason = reason

    def _details(self) -> None:
        """What the Temporal UI shows for this user right now."""
        workflow.set_current_details(details(self.journey.name, self.user_id, self.state))
