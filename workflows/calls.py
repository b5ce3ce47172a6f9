"""The interpreter's activity calls: a send (retried through provider outages until it is
done or the user leaves), its quiet hours, and a controller activity (profile, split, date,
quiet hours: given up when the user leaves). A base class of ``JourneyWorkflow``: workflow code.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

import temporalio.exceptions
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.models import CancelMessageInput, SendMessageInput, SendResult
    from activities.policy import DropMessageInput, QuietHoursInput, QuietHoursResult
    from journeys.language.models import EngagementNode, QuietHours
    from workflows.waits import Waits

# A provider outage delays a message; it never drops it: retry without a limit, backing off.
ACTIVITY_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=5)),
}
#: A send that waits heartbeats (activities.delivery); one silent this long is retried elsewhere.
SEND_HEARTBEAT = timedelta(seconds=10)

T = TypeVar("T")


class Calls(Waits):
    """What the calls need of the interpreter (``_patched``: does this run have a change?),
    and the calls themselves."""

    _v2: bool

    def _patched(self, change: str) -> bool:
        """Does this run have ``change``? Interpreter 2 has every change made before it."""
        return self._v2 or workflow.patched(change)

    async def _quiet_hours(self, node: EngagementNode, quiet: QuietHours,
                           message: SendMessageInput) -> SendResult | None:
        """In the user's quiet hours: drop the message (recorded), or hold it until they end.

        None: send it now (not quiet, or held until the window ended).
        """
        check = await self._control(
            "check_quiet_hours", QuietHoursInput(
                user_id=self.user_id, node_id=node.id, now=workflow.now(), quiet_hours=quiet,
                timezone=self.journey.timezone),
            QuietHoursResult, f"quiet hours: {node.id}")
        if check is None or check.until is None:  # (None: the user left meanwhile)
            return None
        if quiet.action == "drop":
            reason = f"in quiet hours ({quiet.start}-{quiet.end} {check.timezone})"
            return await workflow.execute_activity(
                "drop_message", DropMessageInput(message=message, reason=reason),
                result_type=SendResult, summary=f"drop {node.channel}: {node.id}, {reason}",
                **ACTIVITY_OPTIONS)
        self.state.held = check.label
        try:
            await self._sleep(check.until - workflow.now(), f"{check.label} ({node.id})")
        finally:
            self.state.held = None
        return None

    async def _send(self, node: EngagementNode, message: SendMessageInput) -> SendResult | None:
        """Send, retrying through provider outages, until it is done or the user leaves (an exit
        event or the journey timeout): then no new attempt starts, and the outbox says so."""
        state, label = self.state, f"{node.channel}: {node.id}"
        left = self._time_left()
        if left is not None and left <= timedelta(0):
            self._leave(self._timeout_reason())
            return None
        # The server stops retrying at the journey's deadline: no timer of our own needed.
        options = {**ACTIVITY_OPTIONS, "schedule_to_close_timeout": left} if left else ACTIVITY_OPTIONS
        if self._input.send_timeout:  # the attempt's bound (JOURNEYS_SEND_TIMEOUT), and a margin
            options = {**options, "start_to_close_timeout": timedelta(seconds=self._input.send_timeout + 10)}
        send = workflow.start_activity(
            "send_message", message, result_type=SendResult, summary=label,
            # A long send heartbeats: cancel, terminate and a worker's shutdown reach it. (An
            # option of the same command, not a new one: histories without it replay unchanged.)
            heartbeat_timeout=SEND_HEARTBEAT,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED, **options)
        await workflow.wait_condition(lambda: send.done() or state.exit_reason is not None)
        if not send.done():
            send.cancel()  # waits for an attempt under way: what it did is what we record
        try:
            return await send
        except ActivityError as error:  # cancelled, or out of time, between attempts
            # At the deadline the server stops retrying: with the last failure, or a timeout.
            if (error.retry_state == temporalio.exceptions.RetryState.TIMEOUT
                    or isinstance(error.cause, temporalio.exceptions.TimeoutError)):
                self._leave(self._timeout_reason())
            return await workflow.execute_activity(
                "cancel_message", CancelMessageInput(
                    message=message, reason=state.exit_reason or f"failed: {error.cause}"),
                result_type=SendResult, summary=f"cancel {label}", **ACTIVITY_OPTIONS)

    async def _control(self, activity: str, arg: Any, result_type: type[T], summary: str) -> T | None:
        """A controller activity (profile, split, date, quiet hours), given up when the user
        leaves and bounded by the journey's time: one that keeps failing (a bug, a store that
        is down) no longer holds a user past an exit event or the timeout. None: they left."""
        if not self._patched("controllers-end-with-the-journey"):
            return await workflow.execute_activity(activity, arg, result_type=result_type,
                                                   summary=summary, **ACTIVITY_OPTIONS)
        left = self._time_left()
        if left is not None and left <= timedelta(0):
            self._leave(self._timeout_reason())
            return None
        options = {**ACTIVITY_OPTIONS, "schedule_to_close_timeout": left} if left else ACTIVITY_OPTIONS
        task = workflow.start_activity(activity, arg, result_type=result_type, summary=summary,
                                       **options)
        await workflow.wait_condition(lambda: task.done() or self.state.exit_reason is not None)
        if not task.done():
            task.cancel()
            return None
        try:
            return await task
        except ActivityError:  # retries stopped at the journey's deadline
            self._leave(self._timeout_reason())
            return None
