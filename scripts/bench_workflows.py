"""The benchmark's bare workflow: the journey's shape with no journey logic.

Timer, activity, timer, activity, and nothing else: no graph walk, no search attributes, no
personalization, no router. ``scripts/bench.py`` runs it beside the journey interpreter to show
what the journey logic costs over Temporal itself. Workflow code only (the sandbox imports it).
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    # The journey's own activity options, so retries and timeouts match.
    from workflows.calls import ACTIVITY_OPTIONS


class BareInput(BaseModel):
    user_id: str
    delay: timedelta = timedelta(seconds=1)


class BareWrite(BaseModel):
    """One outbox row, as the journey's send activity would claim it."""

    idempotency_key: str
    user_id: str
    workflow_id: str
    node_id: str


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    @workflow.run
    async def run(self, input: BareInput) -> int:
        wid = workflow.info().workflow_id
        written = 0
        for node_id in ("first", "second"):
            await workflow.sleep(input.delay)
            inserted: bool = await workflow.execute_activity(
                "bare_write", BareWrite(idempotency_key=f"{wid}:{node_id}", user_id=input.user_id,
                                        workflow_id=wid, node_id=node_id),
                result_type=bool, **ACTIVITY_OPTIONS)
            written += int(inserted)
        return written
