"""The audience workflow: one occurrence of an audience journey's schedule enters its segment's
users, a page at a time; and the daily job that prunes what users did.

A Temporal Schedule per audience journey starts :class:`AudienceWorkflow` (ingestion.audiences
keeps the schedules in step with the catalog). The occurrence is the time its schedule fired and
its chain of runs (the first run's id: Temporal keeps a fire time's whole seconds, and a trigger
may fire in the second of the last occurrence): both are part of each start's identity (the
entry event's id), so a page entered again after a crash or a restart of the worker starts nobody
twice, and re-entry rules hold per occurrence. The cursor (the last user id entered) goes on
through continue-as-new.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from activities.models import AudienceCounts, AudiencePage, AudiencePageInput

#: Set by Temporal on a workflow its schedule started: the time it was scheduled for.
SCHEDULED_TIME = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
#: Pages per run before it goes on as new (its history stays short whatever the audience's size).
PAGES_PER_RUN = 100
#: A page's activity: it heartbeats after every few starts; a silent one is retried elsewhere.
PAGE_HEARTBEAT = timedelta(seconds=10)
#: Patch: an occurrence is known by its chain's first run too, not by the second it fired alone.
OCCURRENCE_BY_RUN = "audience-occurrence-by-run"


class AudienceInput(BaseModel):
    """An occurrence of ``journey_id``'s schedule; the rest is set by continue-as-new."""

    journey_id: str
    fired: datetime | None = None
    occurrence: str | None = None  # the chain's first run id (None: begun before the patch)
    after: str | None = None
    counts: AudienceCounts = Field(default_factory=AudienceCounts)
    #: The seconds a page may take (pages of JOURNEYS_AUDIENCE_PAGE at JOURNEYS_AUDIENCE_RATE).
    page_seconds: float = 600.0


@workflow.defn(name="AudienceWorkflow")
class AudienceWorkflow:
    def __init__(self) -> None:
        self._counts = AudienceCounts()
        self._problem: str | None = None

    @workflow.run
    async def run(self, input: AudienceInput) -> AudienceCounts:
        info = workflow.info()
        fired = input.fired or info.typed_search_attributes.get(SCHEDULED_TIME) or workflow.now()
        occurrence = input.occurrence
        if info.continued_run_id is None and workflow.patched(OCCURRENCE_BY_RUN):
            occurrence = info.first_execution_run_id  # the chain's first run: it names the occurrence
        self._counts, after = input.counts, input.after
        for _ in range(PAGES_PER_RUN):
            self._details(input.journey_id, fired, running=True)
            given = AudiencePageInput(journey_id=input.journey_id, fired=fired, occurrence=occurrence,
                                      after=after)
            page = await workflow.execute_activity(
                "audience_page", given,
                result_type=AudiencePage, summary=f"users after {after or 'the first'}",
                start_to_close_timeout=timedelta(seconds=input.page_seconds),
                heartbeat_timeout=PAGE_HEARTBEAT,
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)))
            self._counts, after, self._problem = self._counts.plus(page.counts), page.last, page.problem
            if page.done:
                self._details(input.journey_id, fired, running=False)
                return self._counts
        workflow.continue_as_new(input.model_copy(update={
            "fired": fired, "occurrence": occurrence, "after": after, "counts": self._counts}))

    @workflow.query
    def progress(self) -> AudienceCounts:
        return self._counts

    def _details(self, journey_id: str, fired: datetime, *, running: bool) -> None:
        c = self._counts
        problem = f"\n- not run: {self._problem}" if self._problem else ""
        workflow.set_current_details(
            f"**audience of `{journey_id}`**, occurrence {fired:%Y-%m-%d %H:%M} UTC "
            f"({'running' if running else 'done'})\n\n- matched: {c.matched}\n- started: {c.started}"
            f"\n- already in: {c.already_in}\n- skipped: {c.skipped}{problem}")


class PruneInput(BaseModel):
    """The daily prune of what users did (ingestion.audiences' schedule starts it)."""

    retention_days: int = 400


@workflow.defn(name="PruneBehaviourWorkflow")
class PruneBehaviourWorkflow:
    @workflow.run
    async def run(self, input: PruneInput) -> list[int]:
        result: list[int] = await workflow.execute_activity(
            "prune_behaviour", input.retention_days, result_type=list[int],
            start_to_close_timeout=timedelta(minutes=30))
        return result
