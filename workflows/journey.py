"""The journey interpreter: one workflow per (journey, user), one small handler per node type.

Deterministic by construction: every side effect (sends, profile reads and writes, date
arithmetic in the user's timezone) is an activity; waits are timers or ``wait_condition``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.models import (
        CancelMessageInput,
        ChooseBranchInput,
        ChoosePathInput,
        ResolveDateInput,
        ResolveDateResult,
        SendMessageInput,
        SendResult,
        TriggerJourneyInput,
        UpdateProfileInput,
        UpdateProfileResult,
        message_key,
    )
    from journeys.events import Event, engagement_events, matches, personalization_event, tracking_id
    from journeys.language.durations import format_duration
    from journeys.language.models import (
        ActionNode,
        DateTimeNode,
        DelayNode,
        EngagementNode,
        InactionNode,
        IntelliNode,
        Node,
        ProfileUpdateNode,
        Scalar,
        SegmentNode,
        SplitNode,
        TriggerJourneyNode,
    )
    from telemetry.logs import journey_entered, journey_exited
    from workflows.calls import ACTIVITY_OPTIONS, Calls
    from workflows.exits import ExitRequest, ExitResult
    from workflows.models import JOURNEY_NODE, JourneyInput, JourneyState, SentMessage, journey_of
    from workflows.outcomes import Outcomes



_SEEN_IDS_KEPT = 500
_WAITS = frozenset({"action", "inaction", "date_time", "delay"})


@workflow.defn(name="JourneyWorkflow")
class JourneyWorkflow(Calls):
    @workflow.init
    def __init__(self, input: JourneyInput) -> None:
        self.journey = journey_of(input)  # the version it entered, for ever
        self.user_id = input.user_id
        self.state = input.carried or JourneyState(event=input.entry_event)
        if input.entry_event and input.entry_event.id not in self.state.seen_event_ids:
            self.state.seen_event_ids.append(input.entry_event.id)
        self._input = input
        self._v2 = input.interpreter >= 2  # see JourneyInput.interpreter
        self._v3 = input.interpreter >= 3
        self._v4 = input.interpreter >= 4
        self._end_recorded = False  # the send that ended the walk recorded its end
        # A run that went on as new mid-wait listens again at once: signals may come first.
        state = self.state
        self._waiting: tuple[frozenset[str], dict[str, Scalar]] | None = (
            (frozenset(state.waiting_any or [state.waiting_for]), state.waiting_where)
            if state.waiting_for else None)
        self._caught: Event | None = None
        self._resume_wake = state.next_wake if input.resume_mid_wait else None
        self._resuming = input.resume_mid_wait
        self._outcomes = Outcomes(self.journey, self.user_id, state, self._patched)
        self._redate = False  # the profile date of the current wait changed: resolve it again
        self._sending = 0  # engagement nodes under way: an exit returns once none is
        self._walked = False  # the walk is over (its end being recorded): no exit to take
        self._handlers: dict[str, Callable[[Any], Awaitable[str | None]]] = {
            "action": self._action, "inaction": self._inaction, "date_time": self._date_time,
            "delay": self._delay, "engagement": self._engagement,
            "profile_update": self._profile_update, "split": self._split,
            "intellinode": self._intellinode, "exit": self._exit_node,
            "trigger_journey": self._trigger_journey, "segment": self._segment,
        }

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneyState:
        state = self.state
        if not state.run_key:
            state.run_key = str(workflow.uuid4())
            state.entered_at = workflow.now()
            self._outcomes.enter()
            journey_entered(self.journey.id, self.user_id, self.journey.entry)  # metric and log
        self._outcomes.start()
        node_id: str | None = input.resume_node or self.journey.entry
        for _ in range(len(self.journey.nodes) + 1):  # bounded: the graph has no cycles
            if node_id is None or state.exit_reason:
                break
            if workflow.info().is_continue_as_new_suggested():
                await self._continue_as_new(node_id, mid_wait=False)
            node = self.journey.node(node_id)
            if not self._resuming:
                self._arrive(node, input.search_attributes)
            node_id = await self._handlers[node.type](node)
            self._resuming = False
        self._walked = True  # what is recorded next is how it ended: an exit comes too late
        await self._outcomes.finish(timed_out=state.exit_reason == self._timeout_reason(),
                                    end_recorded=self._end_recorded)
        state.status = "exited" if state.exit_reason else "finished"
        journey_exited(self.journey.id, self.user_id, state.current_node, state.exit_reason)
        state.next_wake = None
        self._details()
        await workflow.wait_condition(workflow.all_handlers_finished)  # an exit's answer first
        return self._result() if self._v3 else state

    def _result(self) -> JourneyState:
        """Interpreter 3's result: the state without what history holds already or no longer
        needs, the event's properties (in the input or the signal that brought it) and the ids
        kept against duplicates (up to 500); interpreter 4's also without the event (the input
        or its signal holds it; each message names its event). A query on the closed run still
        shows them all."""
        event, state = self.state.event, self.state
        if self._v4:
            return state.model_copy(update={"seen_event_ids": [], "event": None})
        return state.model_copy(update={
            "seen_event_ids": [], "event": event.model_copy(update={"properties": {}}) if event else None})

    def _event_input(self, own: bool = True) -> dict[str, Any]:
        """The personalization event, as an activity's input holds it: the entry event kept in
        the store (interpreter 4) by its id and the journey whose receipt keeps it (``kept_in``,
        unless ``own``: the input's own journey id says it); any other event whole."""
        event, kept = self.state.event, self._input.kept_event
        if event is None or kept is None or event.id != kept:
            return {"event": event}
        return {"kept_event": kept} if own else {"kept_event": kept, "kept_in": self.journey.id}

    @workflow.signal
    def event(self, event: Event) -> None:
        """An event of this user. Duplicates are ignored; it only counts for a wait under way."""
        state = self.state
        if event.id in state.seen_event_ids or event.user_id != self.user_id:
            return
        state.seen_event_ids = [*state.seen_event_ids[-_SEEN_IDS_KEPT + 1:], event.id]
        if event.name in self.journey.goals and event.name not in state.goals_reached:
            state.goals_reached.append(event.name)
            self._outcomes.goal(event)
        if event.name in self.journey.exit_when and not state.exit_reason:
            state.exit_reason = f"exit event '{event.name}'"
        elif self._waiting and self._caught is None:
            names, where = self._waiting
            if event.name in names and matches(where, event.properties):
                self._caught = event

    @workflow.signal
    def profile_changed(self, names: list[str]) -> None:
        """The user's profile properties ``names`` changed: a wait on one of them resolves again."""
        node = self.journey.node(self.state.current_node) if self.state.current_node else None
        if isinstance(node, DateTimeNode) and node.profile_property in names:
            self._redate = True

    @workflow.update
    async def exit(self, request: ExitRequest) -> ExitResult:
        """An operator takes the user out. Returns once no message of this journey can go out:
        a send under way (an attempt, or retries) has been cancelled or has finished, and the
        outbox records which."""
        self._leave(f"exited by an operator: {request.reason}")
        await workflow.wait_condition(lambda: self._sending == 0)
        return ExitResult(node=self.state.current_node, reason=self.state.exit_reason or "")

    @exit.validator
    def _exit_allowed(self, request: ExitRequest) -> None:
        # Leaving already (an exit event), it is still accepted: its answer waits for a send
        # under way like any other. Only a walk that is over refuses (and leaves no history).
        if self._walked:
            raise ValueError(f"the journey has ended: {self.state.exit_reason or 'walked to its end'}")

    @workflow.query
    def status(self) -> JourneyState:
        return self.state

    # --- node handlers: each returns the next node's id, or None to leave ------------------

    async def _action(self, node: ActionNode) -> str | None:
        if node.id == self.journey.entry:
            return node.next
        caught = await self._wait_for(node.event, node.where, node.within, node.id)
        if caught is None:
            if not node.timeout_next:
                self._leave(f"did not do '{node.event}' in time")
            return node.timeout_next
        self.state.event = caught  # a later action node replaces the personalization event
        return node.next

    async def _segment(self, node: SegmentNode) -> str | None:
        # An audience's entry: its event only names the occurrence; templates get no event.
        self.state.event = None
        return node.next

    async def _inaction(self, node: InactionNode) -> str | None:
        # The main event (entry) or the current one (mid-journey) stays the personalization event.
        if await self._wait_for(node.not_event, {}, node.within, node.id):
            self._leave(f"did '{node.not_event}' within {format_duration(node.within)}")
            return None
        return node.next

    async def _date_time(self, node: DateTimeNode) -> str | None:
        # (A run that went on as new during the date's wait has its event already.)
        if node.event and node.id != self.journey.entry and not (
                self._resuming and not self.state.waiting_for):
            caught = await self._wait_for(node.event, {}, node.within, node.id)
            if caught is None:
                self._leave(f"did not do '{node.event}' in time")
                return None
            self.state.event = caught
        elif node.profile_property and node.id == self.journey.entry:
            self.state.event = None  # a profile date carries no event
        self._redate = False
        previous = None  # the moment before the profile changed: kept if the change is no date
        while True:  # again each time the profile's date changes during the wait
            result = await self._control(
                "resolve_date", ResolveDateInput(
                    user_id=self.user_id, node_id=node.id, now=workflow.now(), **self._event_input(False),
                    date_property=node.date_property, profile_property=node.profile_property,
                    offset=node.offset, at=node.at, previous=previous),
                ResolveDateResult, f"date of {node.id}")
            if result is None:  # the user left meanwhile
                return None
            if result.moment is None:
                self._leave(result.reason or "no date")
                return None
            wait = result.moment - workflow.now()
            if wait > timedelta(0):
                await self._sleep(wait, f"wait until {result.moment:%Y-%m-%d %H:%M} UTC ({node.id})",
                                  until=lambda: self._redate)
            if not self._redate or self.state.exit_reason or not self._patched("profile-dates"):
                return node.next
            self._redate = False
            if self._patched("profile-date-kept"):
                previous = result.moment

    async def _delay(self, node: DelayNode) -> str | None:
        await self._sleep(node.duration, f"wait {format_duration(node.duration)} before {node.next}")
        return node.next

    async def _engagement(self, node: EngagementNode) -> str | None:
        self._sending += 1
        try:
            return await self._message(node)
        finally:
            self._sending -= 1

    async def _message(self, node: EngagementNode) -> str | None:
        state, info, track = self.state, workflow.info(), self.journey.track_of(node)
        engage = bool(engagement_events(node)) and self._patched("on-engagement")
        if engage and self._resuming and state.messages and state.messages[-1].node_id == node.id:
            return await self._engaged(node)  # went on as new while it waited: sent already
        if engage:  # listening from before the send: a click may come before its result
            key = message_key(info.workflow_id, state.run_key, node.id)
            self._listen(list(engagement_events(node)), {"message_id": tracking_id(key)})
        # Interpreter 3 gives the run key; the activity makes the key from its workflow's id.
        by_key = {"run_key": state.run_key} if self._v3 else {
            "idempotency_key": message_key(info.workflow_id, state.run_key, node.id),
            "workflow_id": info.workflow_id}
        message = SendMessageInput(
            **by_key, journey_id=self.journey.id, user_id=self.user_id,
            node_id=node.id, channel=node.channel, **self._event_input(), version=self._input.version,
            message=None if self._input.version else node.message,  # by reference if the run is
            ignore_caps=self.journey.ignore_caps, held_out=state.held_out,
            transactional=self.journey.transactional, topic=self.journey.topic_of(node),
            track_opens=track.opens, track_clicks=track.clicks,
            end=self._outcomes.walk_end(with_run_key=not self._v3)
            if self._v2 and not node.next and not node.on and not engage else None)
        quiet = self.journey.quiet_hours_of(node)
        result = None
        if quiet and self._patched("quiet-hours"):
            result = await self._quiet_hours(node, quiet, message)
            if result is None and state.exit_reason:  # the user left while it was held
                result = await workflow.execute_activity(
                    "cancel_message", CancelMessageInput(message=message, reason=state.exit_reason),
                    result_type=SendResult, summary=f"cancel {node.channel}: {node.id}",
                    **ACTIVITY_OPTIONS)
        result = result or await self._send(node, message)
        if result is None:  # the journey's time ran out before the send could start
            self._stop_listening()
            return None
        event = personalization_event(node.channel, state.event)
        state.messages.append(SentMessage(
            node_id=node.id, channel=node.channel.value, status=result.status, reason=result.reason,
            event_name=event.name if event else None, event_id=event.id if event else None))
        if engage and result.status == "delivered":
            return await self._engaged(node)
        if engage:  # not delivered: nothing to wait for
            self._stop_listening()
        target = node.on.get(result.status)  # the path of what happened, else next
        self._end_recorded = result.ended
        return target if target and self._patched("outcome-paths") else node.next

    async def _profile_update(self, node: ProfileUpdateNode) -> str | None:
        await self._control(
            "update_profile", UpdateProfileInput(
                user_id=self.user_id, node_id=node.id, set=node.set, **self._event_input(False)),
            UpdateProfileResult, f"profile update: {node.id}")
        return node.next  # (if the user left meanwhile, the walk ends here)

    async def _split(self, node: SplitNode) -> str | None:
        return await self._control(
            "choose_branch", ChooseBranchInput(
                user_id=self.user_id, node_id=node.id, branches=node.branches,
                otherwise=node.otherwise, **self._event_input(False)),
            str, f"split: {node.id}")

    async def _intellinode(self, node: IntelliNode) -> str | None:
        if self._patched("intellinode-choice"):  # chosen by an activity from the store
            state = self.state
            path = await self._control("choose_path", ChoosePathInput(
                journey_id=self.journey.id, node=node, run_key=state.run_key, user_id=self.user_id,
                held_out=state.held_out, at=workflow.now()), str, f"path: {node.id}")
            names = [node.path_name(i) for i in range(len(node.paths))]
            return node.paths[names.index(path)].next if path in names else None
        weights = [p.percent if node.mode == "manual" else 1 for p in node.paths]
        point = workflow.random().random() * sum(w or 0 for w in weights)
        for path_, weight in zip(node.paths, weights, strict=True):
            point -= weight or 0
            if point < 0:
                return path_.next
        return node.paths[-1].next

    async def _exit_node(self, node: Node) -> str | None:
        return None

    async def _trigger_journey(self, node: TriggerJourneyNode) -> str | None:
        await self._control("trigger_journey", TriggerJourneyInput(
            journey_id=node.journey, user_id=self.user_id, node_id=node.id, **self._event_input(False)),
            str, f"enter journey {node.journey}")
        return node.next

    # --- bookkeeping ------------------------------------------------------------------------

    def _arrive(self, node: Node, search_attributes: bool) -> None:
        self.state.current_node = node.id
        self.state.path.append(node.id)
        if search_attributes and self._shows_in_search(node):
            workflow.upsert_search_attributes([JOURNEY_NODE.value_set(node.id)])
        self._details()

    def _shows_in_search(self, node: Node) -> bool:
        """Is ``node`` worth a JourneyNode update (each one is a command the server indexes)?

        Only the nodes where a user can stay, the waits: sends and controller nodes pass in
        moments (the details show them), and the entry node is set at start.
        """
        return node.id != self.journey.entry and node.type in _WAITS
