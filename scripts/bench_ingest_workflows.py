"""The ingestion benchmark's bare workflows: what a hand-written app would start per event.

- :class:`BareParkWorkflow`: signal-with-start, the event arrives as the start signal, and the
  workflow parks on a condition (as a journey parks at its next wait);
- :class:`BareSendWorkflow`: signal-with-start, then one activity at once (the bare
  ``bare_write`` of ``scripts.bench_setup``: one outbox row), as a journey's first send.

``scripts/bench_ingest.py`` runs them beside the journey interpreter. Workflow code only (the
sandbox imports it).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    # The journey's own activity options, so retries and timeouts match.
    from scripts.bench_workflows import BareWrite
    from workflows.calls import ACTIVITY_OPTIONS


class BareEvent(BaseModel):
    """An event as an app would pass it: its id, name, user and properties."""

    id: str
    name: str
    user_id: str
    properties: dict[str, Any] = Field(default_factory=dict)


class BareUser(BaseModel):
    user_id: str


class _Signalled:
    """The events a bare workflow has been signalled, the first with its start."""

    def __init__(self) -> None:
        self.events: list[BareEvent] = []

    @workflow.signal(name="event")
    def event(self, event: BareEvent) -> None:
        self.events.append(event)


@workflow.defn(name="BareParkWorkflow")
class BareParkWorkflow(_Signalled):
    @workflow.run
    async def run(self, input: BareUser) -> int:
        await workflow.wait_condition(lambda: len(self.events) >= 2)  # parks after the first
        return len(self.events)


@workflow.defn(name="BareSendWorkflow")
class BareSendWorkflow(_Signalled):
    @workflow.run
    async def run(self, input: BareUser) -> bool:
        await workflow.wait_condition(lambda: bool(self.events))  # the start signal: at once
        wid = workflow.info().workflow_id
        inserted: bool = await workflow.execute_activity(
            "bare_write", BareWrite(idempotency_key=f"{wid}:ping", user_id=input.user_id,
                                    workflow_id=wid, node_id="ping"),
            result_type=bool, **ACTIVITY_OPTIONS)
        return inserted
