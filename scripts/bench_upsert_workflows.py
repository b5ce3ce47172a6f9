"""``scripts/bench_upsert.py``'s second workflow: the bare workflow, then JourneyNode unset at the end.

Its own module because the sandbox imports a workflow's module: ``python -m scripts.bench_upsert``
runs as ``__main__``, which the sandbox would re-execute from its file (as ``__temporal_main__``,
the whole benchmark's imports included) for every workflow. Workflow code only.
"""

from __future__ import annotations

from temporalio import workflow

from scripts.bench_workflows import BareInput, BareWorkflow

with workflow.unsafe.imports_passed_through():
    from workflows.models import JOURNEY_NODE


@workflow.defn(name="BareUnsetWorkflow")
class BareUnsetWorkflow(BareWorkflow):
    """``BareWorkflow``, then one more command: JourneyNode unset, as the interpreter would at the end."""

    @workflow.run
    async def run(self, input: BareInput) -> int:
        written = await super().run(input)
        workflow.upsert_search_attributes([JOURNEY_NODE.value_unset()])
        return written
